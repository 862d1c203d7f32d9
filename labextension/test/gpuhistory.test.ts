/** Keeping GPU history across polls: what to ask for, and merging the answers. */
import { describe, expect, it } from 'vitest';

import type { GpuHistory } from '../src/api';
import { historyRequestSeconds, mergeHistory, trimHistory } from '../src/gpuhistory';

function history(timestamps: number[], util: (number | null)[], kernel?: (number | null)[]): GpuHistory {
  return {
    seconds: 600,
    window: 600,
    interval: 2,
    timestamps,
    gpus: [{ index: 0, uuid: 'GPU-a', memory_total: 100, utilization_gpu: util, memory_used: util.map(v => (v === null ? null : v * 2)) }],
    kernels: kernel
      ? [{ kernel_id: 'k-1', environment_id: 'env-1', gpus: [0], memory_used: kernel, utilization_sm: kernel.map(() => 5) }]
      : []
  };
}

describe('historyRequestSeconds', () => {
  it('asks for the whole window first, then the time since the last answer plus a margin', () => {
    expect(historyRequestSeconds(null, null, 600)).toBe(600);
    const h = history([1, 3], [10, 20]);
    expect(historyRequestSeconds(h, null, 600)).toBe(600);
    expect(historyRequestSeconds(h, 5000, 600)).toBe(16); // 5 s + 3 samples + 5 s
    expect(historyRequestSeconds(h, 3_600_000, 600)).toBe(600); // after a long standby
    expect(historyRequestSeconds(history([], []), 5000, 600)).toBe(600);
  });
});

describe('mergeHistory', () => {
  it('appends what is new and lets the fresh answer win where both overlap', () => {
    const old = history([10, 12, 14], [1, 2, 3]);
    const fresh = history([14, 16], [30, 40]);
    const merged = mergeHistory(old, fresh, 600);
    expect(merged.timestamps).toEqual([10, 12, 14, 16]);
    expect(merged.gpus[0].utilization_gpu).toEqual([1, 2, 30, 40]);
    expect(merged.gpus[0].memory_used).toEqual([2, 4, 60, 80]);
  });

  it('pads a kernel that appears or disappears with nulls, keeping the series aligned', () => {
    const old = history([10, 12], [1, 2]);
    const fresh = history([14, 16], [3, 4], [null, 7]);
    const merged = mergeHistory(old, fresh, 600);
    expect(merged.kernels).toEqual([
      { kernel_id: 'k-1', environment_id: 'env-1', gpus: [0], memory_used: [null, null, null, 7], utilization_sm: [null, null, 5, 5] }
    ]);
    const later = mergeHistory(merged, history([18], [5]), 600);
    expect(later.kernels[0].memory_used).toEqual([null, null, null, 7, null]);
    for (const series of [later.gpus[0].utilization_gpu, later.kernels[0].memory_used]) {
      expect(series).toHaveLength(later.timestamps.length);
    }
  });

  it('keeps only the newest window and drops series left empty', () => {
    const old = history([0, 5, 10], [1, 2, 3], [9, null, null]);
    const merged = mergeHistory(old, history([20], [4]), 12);
    expect(merged.timestamps).toEqual([10, 20]);
    expect(merged.gpus[0].utilization_gpu).toEqual([3, 4]);
    expect(merged.kernels).toEqual([]); // its only value fell out of the window
    expect(merged.seconds).toBe(12);
  });

  it('starts over when the server answers from earlier times (restart, clock set back)', () => {
    const old = history([1000, 1002], [1, 2]);
    const merged = mergeHistory(old, history([10, 12], [7, 8]), 600);
    expect(merged.timestamps).toEqual([10, 12]);
    expect(merged.gpus[0].utilization_gpu).toEqual([7, 8]);
  });

  it('keeps what it has when the answer is empty, and takes the first answer as is', () => {
    const old = history([1, 2], [1, 2]);
    expect(mergeHistory(old, history([], []), 600)).toBe(old);
    const first = history([1], [1]);
    expect(mergeHistory(null, first, 600)).toBe(first);
  });

  it('never holds more than the window, however many answers come', () => {
    let kept: GpuHistory | null = null;
    for (let t = 0; t < 2000; t += 2) {
      kept = mergeHistory(kept, history([t, t + 1], [t % 100, null]), 60);
      expect(kept.timestamps[kept.timestamps.length - 1] - kept.timestamps[0]).toBeLessThanOrEqual(60);
      expect(kept.timestamps.length).toBeLessThanOrEqual(61);
      expect(kept.gpus[0].utilization_gpu).toHaveLength(kept.timestamps.length);
    }
  });
});

describe('trimHistory', () => {
  it('leaves an empty history alone', () => {
    const empty = history([], []);
    expect(trimHistory(empty, 10)).toBe(empty);
  });
});
