import { describe, expect, it } from 'vitest';

import type { StartProgress, StartStep } from '../src/api';
import { formatSeconds, shouldShowStart, startNotice } from '../src/startnotice';

function step(key: string, message: string, state: StartStep['state'] = 'done'): StartStep {
  return { key, message, state, waiting_for: null, detail: null, seconds: 1 };
}

function start(overrides: Partial<StartProgress>): StartProgress {
  return {
    kernel_id: '0123456789abcdef',
    environment: { id: 'docker-torch-1', name: 'torch', display_name: 'torch (docker)' },
    state: 'starting',
    message: 'Checking the image',
    reason: null,
    started: '2026-01-01T00:00:00+00:00',
    ended: null,
    seconds: 12.4,
    steps: [],
    ...overrides
  };
}

describe('start notices', () => {
  it('say the current step, its number and the time so far', () => {
    const notice = startNotice(
      start({
        steps: [
          step('image', 'Checking the image x'),
          step('kernel-layer-download', 'Kernel layer: downloading ipykernel wheels', 'running')
        ]
      })
    );
    expect(notice.type).toBe('in-progress');
    expect(notice.message).toBe(
      'Starting torch (step 2): Kernel layer: downloading ipykernel wheels — 12 s'
    );
  });

  it('end as ready or with the reason of the failure', () => {
    const ready = startNotice(start({ state: 'ready', message: 'Kernel ready in 12.0 s' }));
    expect(ready).toEqual({ type: 'success', message: 'torch: Kernel ready in 12.0 s' });
    const failed = startNotice(start({ state: 'failed', reason: 'Image x is not present locally.' }));
    expect(failed.type).toBe('error');
    expect(failed.message).toContain('the kernel did not start — Image x is not present locally.');
  });

  it('stay silent for quick starts and ended ones', () => {
    expect(shouldShowStart(start({ seconds: 0.3 }))).toBe(false);
    expect(shouldShowStart(start({ seconds: 3 }))).toBe(true);
    expect(shouldShowStart(start({ seconds: 30, state: 'ready' }))).toBe(false);
  });

  it('formats minutes', () => {
    expect(formatSeconds(125)).toBe('2m 05s');
    expect(formatSeconds(9.6)).toBe('10 s');
  });
});
