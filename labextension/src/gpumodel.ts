/**
 * What the GPU section and the status bar show, computed from `GET /gpuenv/api/gpus`
 * and the catalog. Pure functions only, like model.ts.
 */
import type { Environment, GpuDevice, GpuHistory, GpuSnapshot } from './api';
import { environmentForKernel, formatBytes, notebookName } from './model';
import { gpuSeries, GpuSeries, kernelMemorySeries, SeriesPoint } from './sparkline';

/** A Jupyter session as the status bar and GPU section need it. */
export interface SessionRef {
  kernelId: string;
  path: string;
}

/** One process line under a GPU. */
export interface ProcessView {
  key: string;
  /** Notebook name for kernels, "PID 1234 · python" otherwise. */
  label: string;
  /** Full notebook path (tooltip) or empty. */
  path: string;
  /** "name (kind)" of the process's environment, or empty. */
  environment: string;
  memory: string;
  usedMemory: number | null;
  isKernel: boolean;
  /** The kernel's id when the process is a kernel's. */
  kernelId: string | null;
  own: boolean;
  /** The kernel's GPU memory over time, on its first process line of this GPU only. */
  memoryHistory: SeriesPoint[] | null;
}

/** One GPU card. */
export interface GpuView {
  key: string;
  title: string;
  name: string;
  memoryText: string;
  /** Used/total in [0, 1], null when either is unknown. */
  memoryFraction: number | null;
  utilization: number | null;
  temperature: number | null;
  details: string;
  processes: ProcessView[];
  hiddenProcesses: number;
  /** Utilization and memory over time, when the answer carried a history. */
  history: GpuSeries | null;
}

/** Per-GPU cards with each process named by its notebook where it is a kernel. */
export function gpuViews(
  snapshot: GpuSnapshot | null | undefined,
  envs: readonly Environment[] | null | undefined,
  sessions: readonly SessionRef[] = []
): GpuView[] {
  if (!snapshot || !snapshot.available) {
    return [];
  }
  // Short "name (kind)" labels: a process line has little room.
  const envNames = new Map((envs ?? []).map(env => [env.id, `${env.name} (${env.kind})`]));
  const pathsByKernel = new Map(sessions.map(s => [s.kernelId, s.path]));
  return [...(snapshot.gpus ?? [])]
    .sort((a, b) => a.index - b.index)
    .map(gpu => gpuView(gpu, envNames, pathsByKernel, snapshot.history));
}

function gpuView(
  gpu: GpuDevice,
  envNames: Map<string, string>,
  pathsByKernel: Map<string, string>,
  history: GpuHistory | undefined
): GpuView {
  const charted = new Set<string>();
  const total = gpu.memory_total ?? null;
  const used = gpu.memory_used ?? null;
  const fraction =
    total && used !== null && total > 0 ? Math.min(1, Math.max(0, used / total)) : null;
  const processes = [...(gpu.processes ?? [])]
    .sort((a, b) => (b.used_memory ?? -1) - (a.used_memory ?? -1) || a.pid - b.pid)
    .map((proc): ProcessView => {
      const path =
        proc.notebook_path || (proc.kernel_id ? pathsByKernel.get(proc.kernel_id) : '') || '';
      const isKernel = Boolean(proc.kernel_id);
      let label = notebookName(path);
      if (!label) {
        label = isKernel
          ? `Kernel ${proc.kernel_id!.slice(0, 8)}`
          : `PID ${proc.pid}${proc.name ? ` · ${proc.name}` : ''}`;
      }
      return {
        key: `${proc.pid}:${proc.mig_device_uuid ?? ''}`,
        label,
        path,
        environment: proc.environment_id ? envNames.get(proc.environment_id) ?? proc.environment_id : '',
        memory: formatBytes(proc.used_memory),
        usedMemory: proc.used_memory ?? null,
        isKernel,
        kernelId: proc.kernel_id ?? null,
        own: Boolean(proc.own),
        memoryHistory: firstLine(charted, proc.kernel_id)
          ? kernelMemorySeries(history, proc.kernel_id)
          : null
      };
    });
  const details = [
    gpu.compute_capability ? `compute ${gpu.compute_capability}` : '',
    gpu.power_draw !== null && gpu.power_draw !== undefined
      ? `${Math.round(gpu.power_draw)}${gpu.power_limit ? ` / ${Math.round(gpu.power_limit)}` : ''} W`
      : '',
    gpu.mig_mode === 'enabled' ? 'MIG' : ''
  ]
    .filter(Boolean)
    .join(' · ');
  return {
    key: gpu.uuid || `gpu-${gpu.index}`,
    title: `GPU ${gpu.index}`,
    name: gpu.name || 'Unknown GPU',
    memoryText: `${formatBytes(used)} / ${formatBytes(total)}`,
    memoryFraction: fraction,
    utilization: gpu.utilization_gpu ?? null,
    temperature: gpu.temperature ?? null,
    details,
    processes,
    hiddenProcesses: gpu.hidden_processes ?? 0,
    history: gpuSeries(history, gpu.index, gpu.uuid)
  };
}

/** True the first time a kernel id is seen in `seen` (its workers share its chart). */
function firstLine(seen: Set<string>, kernelId: string | null | undefined): boolean {
  if (!kernelId || seen.has(kernelId)) {
    return false;
  }
  seen.add(kernelId);
  return true;
}

/** "Driver 550.54.15 · CUDA 12.4" for the GPU section header; empty when unknown. */
export function driverSummary(snapshot: GpuSnapshot | null | undefined): string {
  if (!snapshot) {
    return '';
  }
  return [
    snapshot.driver_version ? `Driver ${snapshot.driver_version}` : '',
    snapshot.cuda_driver_version ? `CUDA ${snapshot.cuda_driver_version}` : ''
  ]
    .filter(Boolean)
    .join(' · ');
}

/** The no-GPU state: a headline and the server's reason in plain words. */
export function noGpuMessage(snapshot: GpuSnapshot): { title: string; reason: string } {
  if (snapshot.state === 'sampling') {
    return { title: 'Reading GPU status…', reason: snapshot.reason ?? '' };
  }
  if (snapshot.available && (snapshot.gpus ?? []).length === 0) {
    return {
      title: 'No GPU visible',
      reason: snapshot.reason ?? 'No GPU is granted to this server.'
    };
  }
  return {
    title: 'No GPU visible',
    reason: snapshot.reason ?? 'The server did not say why.'
  };
}

/** GPU memory held by one kernel's processes, summed over every GPU it uses. */
export interface KernelGpuUsage {
  bytes: number;
  gpus: number[];
}

export function kernelGpuUsage(
  snapshot: GpuSnapshot | null | undefined,
  kernelId: string | null | undefined
): KernelGpuUsage | null {
  if (!snapshot?.available || !kernelId) {
    return null;
  }
  let bytes = 0;
  const gpus: number[] = [];
  for (const gpu of snapshot.gpus ?? []) {
    const mine = (gpu.processes ?? []).filter(p => p.kernel_id === kernelId);
    if (mine.length) {
      gpus.push(gpu.index);
      bytes += mine.reduce((sum, p) => sum + (p.used_memory ?? 0), 0);
    }
  }
  return gpus.length ? { bytes, gpus: gpus.sort((a, b) => a - b) } : null;
}

/** The active notebook's kernel as the status bar sees it. */
export interface ActiveKernel {
  kernelName: string | null;
  kernelId: string | null;
  path: string;
}

/** Status bar text/tooltip for the active kernel; null when it is not a gpuenv kernel. */
export function statusBarView(
  active: ActiveKernel | null,
  envs: readonly Environment[] | null | undefined,
  snapshot: GpuSnapshot | null | undefined
): { text: string; title: string } | null {
  const env = environmentForKernel(envs, active?.kernelName);
  if (!active || !env) {
    return null;
  }
  const usage = kernelGpuUsage(snapshot, active.kernelId);
  let gpuText: string;
  if (usage) {
    gpuText = `${formatBytes(usage.bytes)} on GPU ${usage.gpus.join(', ')}`;
  } else if (snapshot && !snapshot.available && snapshot.state !== 'sampling') {
    gpuText = 'no GPU';
  } else if (snapshot?.available) {
    gpuText = 'no GPU memory';
  } else {
    gpuText = '';
  }
  // Lab's own kernel item already shows the long display name: stay short.
  const text = gpuText ? `${env.name} · ${gpuText}` : env.name;
  const title = [
    `Kernel environment: ${env.display_name} (${env.kind})`,
    usage ? `GPU memory of this kernel: ${formatBytes(usage.bytes)}` : '',
    'Click to open the GPU Environments panel'
  ]
    .filter(Boolean)
    .join('\n');
  return { text, title };
}
