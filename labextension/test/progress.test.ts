/**
 * The progress endpoints through the REST client, against the real server of
 * test/jupyter-server.ts: a partial listing and the progress report.
 */
import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, inject, it } from 'vitest';

import { GpuEnvClient } from '../src/api';

function client(): GpuEnvClient {
  const baseUrl = inject('jupyterUrl');
  return new GpuEnvClient(
    ServerConnection.makeSettings({
      baseUrl,
      wsUrl: baseUrl.replace(/^http/, 'ws'),
      token: inject('jupyterToken')
    })
  );
}

describe('progress against a real server', () => {
  it('a partial listing ends complete, with the venv and the last scan counted', async () => {
    let listing = await client().listEnvironmentsPartial();
    for (let i = 0; i < 100 && !listing.complete; i++) {
      expect(['discovering', 'probing']).toContain(listing.scan.state);
      await new Promise(resolve => setTimeout(resolve, 200));
      listing = await client().listEnvironmentsPartial();
    }
    expect(listing.complete).toBe(true);
    expect(listing.environments.some(env => env.location.prefix === inject('venvPrefix'))).toBe(
      true
    );
    expect(listing.scan.state).toBe('idle');
  });

  it('the progress report lists starts and the catalog scan', async () => {
    const report = await client().getProgress();
    expect(Array.isArray(report.starts)).toBe(true);
    expect(['idle', 'discovering', 'probing']).toContain(report.listing.state);
    expect(typeof report.listing.message).toBe('string');
  });
});
