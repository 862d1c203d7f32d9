/**
 * The maths of the small GPU charts: time series from `?history=` into SVG path data.
 * Pure functions only, like model.ts; sparklineview.tsx draws the result.
 */
import type { GpuHistory } from './api';

/** One value at one time (Unix seconds); null where the sample had no value. */
export interface SeriesPoint {
  t: number;
  v: number | null;
}

/** The drawing area and the value range mapped onto it. */
export interface SparkBox {
  width: number;
  height: number;
  /** Value at the bottom and top edge (e.g. 0 and 100 for percent). */
  min: number;
  max: number;
  /** A pause longer than this (seconds) between two samples breaks the line. */
  maxGap?: number;
  /** Space kept free at the top and bottom so the stroke is not clipped. */
  pad?: number;
}

/** A drawn line: SVG path data and how many points it goes through. */
export interface SparkPath {
  d: string;
  points: number;
}

/** Pair shared timestamps with one series (the REST shape), dropping malformed entries. */
export function seriesPoints(
  timestamps: readonly number[] | null | undefined,
  values: readonly (number | null)[] | null | undefined
): SeriesPoint[] {
  const out: SeriesPoint[] = [];
  const n = Math.min(timestamps?.length ?? 0, values?.length ?? 0);
  for (let i = 0; i < n; i++) {
    const t = timestamps![i];
    const v = values![i];
    if (!Number.isFinite(t)) {
      continue;
    }
    out.push({ t, v: typeof v === 'number' && Number.isFinite(v) ? v : null });
  }
  return out;
}

/** Zero to the largest value (a flat zero line still gets a range of 1). */
export function valueRange(points: readonly SeriesPoint[]): { min: number; max: number } {
  let max = 0;
  for (const p of points) {
    if (p.v !== null && p.v > max) {
      max = p.v;
    }
  }
  return { min: 0, max: max > 0 ? max : 1 };
}

/** The longest pause between samples that still counts as one continuous line. */
export function gapSeconds(interval: number | null | undefined): number {
  const step = interval && interval > 0 ? interval : 2;
  return 3 * step + 5;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/**
 * SVG path data through `points`, oldest on the left, newest on the right edge.
 *
 * Time runs from the first to the last point. A null value or a pause longer than
 * `maxGap` starts a new sub-path (no line is drawn across a gap); a lone point becomes a
 * zero-length segment, which a round line cap draws as a dot. Values outside
 * [min, max] are clamped to the edges.
 */
export function sparklinePath(points: readonly SeriesPoint[], box: SparkBox): SparkPath {
  const sorted = points.filter(p => Number.isFinite(p.t)).sort((a, b) => a.t - b.t);
  const drawn = sorted.filter(p => p.v !== null);
  if (!drawn.length) {
    return { d: '', points: 0 };
  }
  const start = sorted[0].t;
  const span = sorted[sorted.length - 1].t - start;
  const pad = box.pad ?? 1;
  const range = box.max - box.min;
  const usable = Math.max(0, box.height - 2 * pad);
  const x = (t: number) => (span > 0 ? ((t - start) / span) * box.width : box.width);
  const y = (v: number) => {
    const f = range > 0 ? (v - box.min) / range : 0;
    return pad + usable * (1 - Math.min(1, Math.max(0, f)));
  };
  const parts: string[] = [];
  let open = false;
  let runLength = 0;
  let previous: SeriesPoint | null = null;
  for (const p of sorted) {
    const gap = previous !== null && box.maxGap !== undefined && p.t - previous.t > box.maxGap;
    if (p.v === null || gap) {
      if (open && runLength === 1) {
        parts.push('h0');
      }
      open = false;
      runLength = 0;
    }
    if (p.v !== null) {
      parts.push(`${open ? 'L' : 'M'}${round(x(p.t))} ${round(y(p.v))}`);
      open = true;
      runLength += 1;
    }
    previous = p;
  }
  if (open && runLength === 1) {
    parts.push('h0');
  }
  return { d: parts.join(' '), points: drawn.length };
}

/** The series a GPU card charts, from the `history` of a GPU status answer. */
export interface GpuSeries {
  utilization: SeriesPoint[];
  memory: SeriesPoint[];
  memoryTotal: number | null;
  maxGap: number;
}

export function gpuSeries(
  history: GpuHistory | null | undefined,
  index: number,
  uuid?: string | null
): GpuSeries | null {
  const entry = history?.gpus?.find(g => g.index === index && (!uuid || !g.uuid || g.uuid === uuid));
  if (!history || !entry) {
    return null;
  }
  return {
    utilization: seriesPoints(history.timestamps, entry.utilization_gpu),
    memory: seriesPoints(history.timestamps, entry.memory_used),
    memoryTotal: entry.memory_total ?? null,
    maxGap: gapSeconds(history.interval)
  };
}

/** One kernel's GPU memory over time (summed over its processes and GPUs). */
export function kernelMemorySeries(
  history: GpuHistory | null | undefined,
  kernelId: string | null | undefined
): SeriesPoint[] | null {
  const entry = kernelId ? history?.kernels?.find(k => k.kernel_id === kernelId) : undefined;
  if (!history || !entry) {
    return null;
  }
  return seriesPoints(history.timestamps, entry.memory_used);
}
