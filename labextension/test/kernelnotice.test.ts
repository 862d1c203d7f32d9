/** The notices and labels of kernel health, on payloads shaped like GET /gpuenv/api/kernels/{id}. */
import { describe, expect, it } from 'vitest';

import type { KernelStatus } from '../src/api';
import {
  formatIdle,
  kernelWarning,
  restartNotice,
  startWarningNotice
} from '../src/kernelnotice';

function status(overrides: Partial<KernelStatus> = {}): KernelStatus {
  return {
    id: 'a1b2c3d4-0000',
    name: 'gpuenv-docker-small-1234',
    kind: 'docker',
    environment: { id: 'docker-small-1234', name: 'small', kind: 'docker' },
    container: { id: 'c0ffee', name: 'gpuenv-small', image: 'img' },
    gpus: [],
    execution_state: 'idle',
    idle_seconds: 12,
    connection: 'connected',
    docker: { reachable: true, reason: null, since: null },
    restart_count: 1,
    last_exit: {
      code: 137,
      signal: 'SIGKILL',
      oom_killed: true,
      reason: 'killed: out of memory (limit 300 MiB, mem_limit)',
      at: '2026-11-29T15:00:00+00:00',
      requested: false
    },
    reclaim: null,
    ...overrides
  };
}

describe('kernel health', () => {
  it('explains an automatic restart by the previous exit', () => {
    expect(restartNotice(status(), 'work/train.ipynb')).toBe(
      'train.ipynb: the kernel restarted — killed: out of memory (limit 300 MiB, mem_limit)'
    );
  });

  it('says nothing for a restart the user asked for, or without a known exit', () => {
    const requested = status();
    requested.last_exit!.requested = true;
    expect(restartNotice(requested, 'a.ipynb')).toBeNull();
    expect(restartNotice(status({ last_exit: null }), 'a.ipynb')).toBeNull();
  });

  it('tells of a kernel started although the doctor found an error', () => {
    const message =
      'torch121 (conda) will not work on this host: the driver is too old ' +
      '(fix: upgrade the driver to ≥ 530.30.02)';
    const started = status({ last_exit: null, start_warning: message });
    expect(startWarningNotice(started)).toBe(
      'Kernel a1b2c3d4 started although small will not work on this host.'
    );
    expect(startWarningNotice({ ...started, environment: null })).toBe(
      'Kernel a1b2c3d4 started although its environment will not work on this host.'
    );
    expect(kernelWarning(started)).toBe('incompatible with this host');
    expect(startWarningNotice(status())).toBeNull();
    expect(startWarningNotice(status({ start_warning: null }))).toBeNull();
  });

  it('formats idle time', () => {
    expect(formatIdle(65)).toBe('idle 1m 05s');
    expect(formatIdle(3 * 3600 + 120)).toBe('idle 3h 02m');
    expect(formatIdle(null)).toBe('');
  });

  it('warns about Docker outages and idle GPU kernels', () => {
    expect(kernelWarning(undefined)).toBeNull();
    expect(kernelWarning(status())).toBeNull();
    expect(kernelWarning(status({ connection: 'disconnected' }))).toBe('disconnected from Docker');
    const warned = status({
      reclaim: {
        kernel_id: 'a1b2c3d4-0000',
        idle_seconds: 3300,
        gpu_memory: 2 ** 31,
        shutdown_at: '2026-11-29T16:00:00+00:00',
        message: 'Idle for 55.0 min'
      }
    });
    expect(kernelWarning(warned)).toMatch(/^idle GPU kernel: shut down at /);
  });
});
