/**
 * The REST client against a real jupyter server running the jupyter_gpuenv
 * extension (started by test/jupyter-server.ts): real auth, real JSON errors.
 */
import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, inject, it } from 'vitest';

import { ApiError, exportQuery, filenameFromDisposition, GpuEnvClient } from '../src/api';

function client(token = inject('jupyterToken'), baseUrl = inject('jupyterUrl')): GpuEnvClient {
  return new GpuEnvClient(
    ServerConnection.makeSettings({ baseUrl, wsUrl: baseUrl.replace(/^http/, 'ws'), token })
  );
}

async function rejection(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error('the call was expected to fail');
}

describe('GpuEnvClient against a real server', () => {
  it('lists the configured venv with its probed Python version', async () => {
    const envs = await client().listEnvironments();
    const venv = envs.find(env => env.location.prefix === inject('venvPrefix'));
    expect(venv, JSON.stringify(envs)).toBeDefined();
    expect(venv!.kind).toBe('venv');
    expect(venv!.name).toBe('plainvenv');
    expect(venv!.kernel_name).toBe(`gpuenv-${venv!.id}`);
    expect(venv!.python_version).toMatch(/^3\.\d+/);
    expect(venv!.torch_version).toBeNull();
  });

  it('resolving a notebook that does not exist is a JSON 404 naming it', async () => {
    const error = await rejection(client().resolveNotebook('no-such-notebook.ipynb'));
    expect(error.status).toBe(404);
    expect(error.message).toContain('no-such-notebook.ipynb');
  });

  it('refresh re-scans and answers the same environments', async () => {
    const before = (await client().listEnvironments()).map(env => env.id).sort();
    const after = (await client().refreshEnvironments()).map(env => env.id).sort();
    expect(after).toEqual(before);
  });

  it('exports an environment.yml with the server-chosen file name', async () => {
    const envs = await client().listEnvironments();
    const venv = envs.find(env => env.location.prefix === inject('venvPrefix'))!;
    const file = await client().exportEnvironment(venv.id, 'no-builds');
    expect(file.filename).toMatch(/\.ya?ml$/);
    expect(file.text).toMatch(/^name: /m);
    expect(file.text).toMatch(/^dependencies:/m);
    expect(file.text).toMatch(/python=3\.\d+/);
  });

  it('turns an unknown id into a 404 ApiError carrying the server message', async () => {
    const error = await rejection(client().exportEnvironment('venv-no-such-env-0000', 'full'));
    expect(error.status).toBe(404);
    expect(error.message).toContain('venv-no-such-env-0000');
  });

  it('answers GPU status on this GPU-less machine with a reason', async () => {
    const gpus = await client().getGpus();
    expect(typeof gpus.available).toBe('boolean');
    if (!gpus.available) {
      expect(gpus.reason).toEqual(expect.any(String));
      expect(gpus.reason!.length).toBeGreaterThan(0);
    }
    expect(Array.isArray(gpus.gpus)).toBe(true);
  });

  it('asks for GPU history and reads a bad window as a 400 with the message', async () => {
    const gpus = await client().getGpus(600);
    // No GPU here: the history is empty but has its shape and the server's window.
    expect(gpus.history).toMatchObject({ timestamps: expect.any(Array), gpus: expect.any(Array) });
    expect(gpus.history!.seconds).toBeLessThanOrEqual(gpus.history!.window);
    const error = await rejection(client().getGpus(-1));
    expect(error.status).toBe(400);
    expect(error.message).toMatch(/history/);
  });

  it('reports a wrong token as 403 without leaking data', async () => {
    const error = await rejection(client('not-the-token').listEnvironments());
    expect(error.status).toBe(403);
  });

  it('reports an unreachable server as status 0', async () => {
    const error = await rejection(client(undefined, 'http://127.0.0.1:9/').getGpus());
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/Cannot reach/);
  });

  it('builds export URLs with the conda flags', () => {
    const c = client();
    expect(c.url('environments/x/export', exportQuery('from-history'))).toBe(
      `${inject('jupyterUrl')}gpuenv/api/environments/x/export?no_builds=false&from_history=true`
    );
  });
});

describe('filenameFromDisposition', () => {
  it('reads quoted, bare and RFC 5987 file names', () => {
    expect(filenameFromDisposition('attachment; filename="vision.yml"', 'x')).toBe('vision.yml');
    expect(filenameFromDisposition('attachment; filename=vision.yml', 'x')).toBe('vision.yml');
    expect(filenameFromDisposition("attachment; filename*=UTF-8''vis%C3%ADon.yml", 'x')).toBe(
      'visíon.yml'
    );
  });

  it('never lets a server name escape the download folder', () => {
    expect(filenameFromDisposition('attachment; filename="../../etc/passwd"', 'x')).toBe('passwd');
    expect(filenameFromDisposition('attachment; filename=""', 'fallback.yml')).toBe('fallback.yml');
    expect(filenameFromDisposition(null, 'fallback.yml')).toBe('fallback.yml');
  });
});
