/**
 * Keeping the GPU history between polls: the first answer brings the whole window, later
 * ones only what is new, merged here. Pure functions only, like model.ts.
 */
import type { GpuHistory } from './api';

type GpuEntry = GpuHistory['gpus'][number];
type KernelEntry = GpuHistory['kernels'][number];

/**
 * Seconds of history to ask for: the whole window at first, then the time since the last
 * answer plus a margin of a few samples (the server caps it at its own window).
 */
export function historyRequestSeconds(
  previous: GpuHistory | null | undefined,
  msSinceLastAnswer: number | null,
  windowSeconds: number
): number {
  if (!previous || msSinceLastAnswer === null || !previous.timestamps.length) {
    return windowSeconds;
  }
  const margin = 3 * (previous.interval > 0 ? previous.interval : 2) + 5;
  const wanted = Math.ceil(Math.max(0, msSinceLastAnswer) / 1000 + margin);
  return Math.min(windowSeconds, wanted);
}

function padded<T>(values: readonly T[] | undefined, length: number): (T | null)[] {
  const out: (T | null)[] = [];
  for (let i = 0; i < length; i++) {
    out.push(values && i < values.length ? values[i] : null);
  }
  return out;
}

/**
 * The previous history with the fresh answer appended, trimmed to the newest
 * `windowSeconds`. The fresh answer wins from its first timestamp on (so a restarted
 * server or a clock set back replaces what came before); an empty answer adds nothing.
 */
export function mergeHistory(
  previous: GpuHistory | null | undefined,
  fresh: GpuHistory,
  windowSeconds: number
): GpuHistory {
  if (!previous || !previous.timestamps.length) {
    return fresh;
  }
  if (!fresh.timestamps.length) {
    return previous;
  }
  const from = fresh.timestamps[0];
  let kept = 0;
  while (kept < previous.timestamps.length && previous.timestamps[kept] < from) {
    kept++;
  }
  const timestamps = [...previous.timestamps.slice(0, kept), ...fresh.timestamps];
  const n = fresh.timestamps.length;
  const gpuKey = (g: GpuEntry) => `${g.index}:${g.uuid ?? ''}`;
  const oldGpus = new Map(previous.gpus.map(g => [gpuKey(g), g]));
  const newGpus = new Map(fresh.gpus.map(g => [gpuKey(g), g]));
  const gpus: GpuEntry[] = [];
  for (const key of new Set([...oldGpus.keys(), ...newGpus.keys()])) {
    const a = oldGpus.get(key);
    const b = newGpus.get(key);
    const base = (b ?? a)!;
    gpus.push({
      index: base.index,
      uuid: base.uuid,
      memory_total: b?.memory_total ?? a?.memory_total ?? null,
      utilization_gpu: [
        ...padded(a?.utilization_gpu, kept),
        ...padded(b?.utilization_gpu, n)
      ],
      memory_used: [...padded(a?.memory_used, kept), ...padded(b?.memory_used, n)]
    });
  }
  const oldKernels = new Map(previous.kernels.map(k => [k.kernel_id, k]));
  const newKernels = new Map(fresh.kernels.map(k => [k.kernel_id, k]));
  const kernels: KernelEntry[] = [];
  for (const id of new Set([...oldKernels.keys(), ...newKernels.keys()])) {
    const a = oldKernels.get(id);
    const b = newKernels.get(id);
    kernels.push({
      kernel_id: id,
      environment_id: b?.environment_id ?? a?.environment_id ?? null,
      gpus: [...new Set([...(a?.gpus ?? []), ...(b?.gpus ?? [])])].sort((x, y) => x - y),
      memory_used: [...padded(a?.memory_used, kept), ...padded(b?.memory_used, n)],
      utilization_sm: [...padded(a?.utilization_sm, kept), ...padded(b?.utilization_sm, n)]
    });
  }
  const seconds = Math.min(windowSeconds, fresh.window);
  return trimHistory({ ...fresh, seconds, timestamps, gpus, kernels }, seconds);
}

/** Only the points of the newest `windowSeconds`; series left with no value are dropped. */
export function trimHistory(history: GpuHistory, windowSeconds: number): GpuHistory {
  const { timestamps } = history;
  if (!timestamps.length) {
    return history;
  }
  const since = timestamps[timestamps.length - 1] - windowSeconds;
  let first = 0;
  while (first < timestamps.length && timestamps[first] < since) {
    first++;
  }
  const hasValue = (values: readonly (number | null)[]) => values.some(v => v !== null);
  return {
    ...history,
    timestamps: timestamps.slice(first),
    gpus: history.gpus
      .map(g => ({
        ...g,
        utilization_gpu: g.utilization_gpu.slice(first),
        memory_used: g.memory_used.slice(first)
      }))
      .filter(g => hasValue(g.utilization_gpu) || hasValue(g.memory_used)),
    kernels: history.kernels
      .map(k => ({
        ...k,
        memory_used: k.memory_used.slice(first),
        utilization_sm: k.utilization_sm?.slice(first)
      }))
      .filter(k => hasValue(k.memory_used))
  };
}
