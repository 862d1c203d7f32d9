/**
 * Starts a real `jupyter server` (with the jupyter_gpuenv extension enabled
 * as installed) on a free port with a token, configured to see one real venv
 * and no Docker images, for api.test.ts. Stopped after the run.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    jupyterUrl: string;
    jupyterToken: string;
    venvPrefix: string;
  }
}

const PYTHON = process.env.PYTHON || 'python';
const START_TIMEOUT_MS = 90000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitForServer(url: string, token: string, proc: ChildProcess, log: () => string) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) {
      throw new Error(`jupyter server exited with ${proc.exitCode}:\n${log()}`);
    }
    try {
      const response = await fetch(`${url}api/status`, {
        headers: { Authorization: `token ${token}` }
      });
      if (response.ok) {
        return;
      }
    } catch {
      // Not listening yet.
    }
    await new Promise(resolve => setTimeout(resolve, 250));
  }
  throw new Error(`jupyter server did not answer within ${START_TIMEOUT_MS} ms:\n${log()}`);
}

let proc: ChildProcess | null = null;
let root = '';

export async function setup(project: TestProject): Promise<void> {
  root = mkdtempSync(join(tmpdir(), 'gpuenv-vitest-'));
  const venvs = join(root, 'venvs');
  const notebooks = join(root, 'notebooks');
  mkdirSync(venvs);
  mkdirSync(notebooks);
  const venvPrefix = join(venvs, 'plainvenv');
  execFileSync(PYTHON, ['-m', 'venv', '--without-pip', venvPrefix]);
  const configFile = join(root, 'jupyter_server_config.py');
  writeFileSync(
    configFile,
    [
      `c.GpuEnv.conda_envs_dirs = [${JSON.stringify(join(root, 'no-conda-envs'))}]`,
      `c.GpuEnv.venv_dirs = [${JSON.stringify(venvs)}]`,
      'c.GpuEnv.docker_images = {}',
      'c.GpuEnv.docker_label_discovery = False',
      ''
    ].join('\n')
  );
  const port = await freePort();
  const token = `vitest-${Math.random().toString(36).slice(2)}`;
  let output = '';
  proc = spawn(
    PYTHON,
    [
      '-m',
      'jupyter',
      'server',
      `--config=${configFile}`,
      '--ip=127.0.0.1',
      `--port=${port}`,
      '--port-retries=0',
      '--no-browser',
      `--IdentityProvider.token=${token}`,
      `--ServerApp.root_dir=${notebooks}`,
      ...(process.getuid?.() === 0 ? ['--allow-root'] : [])
    ],
    {
      env: {
        ...process.env,
        JUPYTER_RUNTIME_DIR: join(root, 'runtime'),
        JUPYTER_DATA_DIR: join(root, 'data')
      },
      stdio: ['ignore', 'pipe', 'pipe']
    }
  );
  proc.stdout?.on('data', chunk => (output += chunk));
  proc.stderr?.on('data', chunk => (output += chunk));
  const url = `http://127.0.0.1:${port}/`;
  await waitForServer(url, token, proc, () => output);
  project.provide('jupyterUrl', url);
  project.provide('jupyterToken', token);
  project.provide('venvPrefix', venvPrefix);
}

export async function teardown(): Promise<void> {
  if (proc && proc.exitCode === null) {
    const exited = new Promise(resolve => proc!.once('exit', resolve));
    proc.kill('SIGTERM');
    await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 10000))]);
    if (proc.exitCode === null) {
      proc.kill('SIGKILL');
    }
  }
  if (root) {
    rmSync(root, { recursive: true, force: true });
  }
}
