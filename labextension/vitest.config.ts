import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // api.test.ts talks to a real `jupyter server` started once for the run.
    globalSetup: ['test/jupyter-server.ts'],
    testTimeout: 60000,
    hookTimeout: 120000
  }
});
