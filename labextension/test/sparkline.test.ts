/** Sparkline maths: REST history -> series -> SVG path data. */
import { describe, expect, it } from 'vitest';

import type { GpuHistory } from '../src/api';
import { gpuViews } from '../src/gpumodel';
import {
  gapSeconds,
  gpuSeries,
  kernelMemorySeries,
  seriesPoints,
  sparklinePath,
  valueRange
} from '../src/sparkline';
import { GIB, snapshot, vision } from './payloads';

const box = { width: 100, height: 12, min: 0, max: 100, pad: 1 };

/** The (x, y) pairs of a path, sub-path by sub-path. */
function coordinates(d: string): [number, number][][] {
  return d
    .split('M')
    .filter(Boolean)
    .map(part =>
      [...part.matchAll(/(-?[\d.]+) (-?[\d.]+)/g)].map(m => [Number(m[1]), Number(m[2])])
    );
}

function history(overrides: Partial<GpuHistory> = {}): GpuHistory {
  return {
    seconds: 600,
    window: 600,
    interval: 2,
    timestamps: [100, 102, 104, 106],
    gpus: [
      {
        index: 0,
        uuid: 'GPU-aaaa',
        memory_total: 80 * GIB,
        utilization_gpu: [0, 50, 100, null],
        memory_used: [GIB, 2 * GIB, 4 * GIB, 8 * GIB]
      }
    ],
    kernels: [
      { kernel_id: 'k-1', environment_id: vision.id, gpus: [0], memory_used: [null, GIB, 3 * GIB, 12 * GIB] }
    ],
    ...overrides
  };
}

describe('sparklinePath', () => {
  it('maps time onto the width and values onto the height, top is max', () => {
    const path = sparklinePath(
      [
        { t: 10, v: 0 },
        { t: 15, v: 50 },
        { t: 20, v: 100 }
      ],
      box
    );
    expect(path.points).toBe(3);
    expect(path.d).toBe('M0 11 L50 6 L100 1');
  });

  it('sorts by time and clamps values outside the range', () => {
    const path = sparklinePath(
      [
        { t: 20, v: 250 },
        { t: 10, v: -5 }
      ],
      box
    );
    expect(coordinates(path.d)).toEqual([[[0, 11], [100, 1]]]);
  });

  it('breaks the line at nulls and at long pauses, and dots lone points', () => {
    const path = sparklinePath(
      [
        { t: 0, v: 10 },
        { t: 1, v: 20 },
        { t: 2, v: null },
        { t: 3, v: 30 },
        { t: 50, v: 40 },
        { t: 51, v: 40 }
      ],
      { ...box, maxGap: 10 }
    );
    expect(path.points).toBe(5);
    const runs = coordinates(path.d);
    expect(runs.map(r => r.length)).toEqual([2, 1, 2]);
    expect(path.d).toContain('h0'); // the lone point at t=3
    expect(path.d.match(/M/g)).toHaveLength(3);
  });

  it('draws nothing without a value, a dot for one sample', () => {
    expect(sparklinePath([], box)).toEqual({ d: '', points: 0 });
    expect(sparklinePath([{ t: 1, v: null }], box)).toEqual({ d: '', points: 0 });
    const one = sparklinePath([{ t: 5, v: 50 }], box);
    expect(one).toEqual({ d: 'M100 6 h0', points: 1 });
  });

  it('keeps a flat line inside the box when min equals max', () => {
    const path = sparklinePath(
      [
        { t: 0, v: 7 },
        { t: 1, v: 7 }
      ],
      { ...box, min: 7, max: 7 }
    );
    for (const [x, y] of coordinates(path.d)[0]) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(100);
      expect(y).toBe(11);
    }
  });
});

describe('series from the REST history', () => {
  it('pairs timestamps with values and drops what is not a number', () => {
    expect(seriesPoints([1, 2, 3], [5, null, Number.NaN])).toEqual([
      { t: 1, v: 5 },
      { t: 2, v: null },
      { t: 3, v: null }
    ]);
    expect(seriesPoints([1, 2], [5])).toEqual([{ t: 1, v: 5 }]);
    expect(seriesPoints(undefined, [1])).toEqual([]);
  });

  it('ranges from zero to the largest value', () => {
    expect(valueRange([{ t: 0, v: 3 }, { t: 1, v: null }, { t: 2, v: 9 }])).toEqual({ min: 0, max: 9 });
    expect(valueRange([{ t: 0, v: 0 }])).toEqual({ min: 0, max: 1 });
  });

  it('allows a pause of a few sample intervals before breaking the line', () => {
    expect(gapSeconds(2)).toBe(11);
    expect(gapSeconds(null)).toBe(11);
  });

  it('finds a GPU by index and uuid, and a kernel by id', () => {
    const h = history();
    const gpu = gpuSeries(h, 0, 'GPU-aaaa')!;
    expect(gpu.utilization.map(p => p.v)).toEqual([0, 50, 100, null]);
    expect(gpu.memoryTotal).toBe(80 * GIB);
    expect(gpu.maxGap).toBe(11);
    expect(gpuSeries(h, 0, 'GPU-other')).toBeNull();
    expect(gpuSeries(h, 1)).toBeNull();
    expect(gpuSeries(undefined, 0)).toBeNull();
    expect(kernelMemorySeries(h, 'k-1')!.map(p => p.v)).toEqual([null, GIB, 3 * GIB, 12 * GIB]);
    expect(kernelMemorySeries(h, 'k-9')).toBeNull();
  });

  it('gives GPU cards their charts and a kernel its chart on its first line only', () => {
    const snap = snapshot({ history: history() });
    snap.gpus[1].processes.push({ pid: 103, used_memory: GIB, kernel_id: 'k-1' }); // a worker
    const views = gpuViews(snap, [vision], []);
    expect(views[0].history!.memory.map(p => p.v)).toEqual([GIB, 2 * GIB, 4 * GIB, 8 * GIB]);
    expect(views[1].history).toBeNull(); // GPU 1 has no history in this answer
    const kernelLines = views[0].processes.filter(p => p.kernelId === 'k-1');
    expect(kernelLines.map(p => p.memoryHistory !== null)).toEqual([true, false]);
    expect(views[0].processes.find(p => p.kernelId === 'k-2')!.memoryHistory).toBeNull();
    expect(gpuViews(snapshot(), [vision], [])[0].history).toBeNull();
  });
});
