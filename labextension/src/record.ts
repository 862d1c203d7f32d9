/**
 * The environment a notebook was saved with (`metadata.gpuenv`, written by the
 * server's pre-save hook) and how it compares with the kernel running now.
 * Pure functions on REST-shaped data, mirroring
 * jupyter_gpuenv/environments/notebook_record.py.
 */
import type { Environment } from './api';

export const RECORD_KEY = 'gpuenv';

/** `metadata.gpuenv` of a notebook. */
export interface NotebookRecord {
  environment_id: string;
  name: string;
  kind: string;
  display_name: string;
  image?: string | null;
  image_id?: string | null;
  python_version?: string | null;
  torch_version?: string | null;
  cuda_version?: string | null;
  cudnn_version?: string | null;
  gpus?: string[];
  recorded_at?: string;
  fingerprint?: string | null;
}

/** `GET /gpuenv/api/resolve?path=...`: this server's environment for a record. */
export interface Resolution {
  path: string;
  record: NotebookRecord;
  environment_id: string;
  kernel_name: string;
  display_name: string;
  rule: 'image_id' | 'fingerprint' | 'name_and_versions' | 'torch_and_cuda';
  rule_text: string;
  exact: boolean;
  mismatch?: string | null;
}

function text(value: unknown): string | null {
  return typeof value === 'string' && value ? value : null;
}

/** The record in notebook metadata, or null when there is none that can be read. */
export function readRecord(value: unknown): NotebookRecord | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  const data = value as Record<string, unknown>;
  const id = text(data.environment_id);
  const name = text(data.name);
  const kind = text(data.kind);
  if (!id || !name || !kind) {
    return null;
  }
  return {
    environment_id: id,
    name,
    kind,
    display_name: text(data.display_name) ?? name,
    image: text(data.image),
    image_id: text(data.image_id),
    python_version: text(data.python_version),
    torch_version: text(data.torch_version),
    cuda_version: text(data.cuda_version),
    cudnn_version: text(data.cudnn_version),
    gpus: Array.isArray(data.gpus) ? data.gpus.filter(g => typeof g === 'string') : [],
    recorded_at: text(data.recorded_at) ?? '',
    fingerprint: text(data.fingerprint)
  };
}

/** `2.9.0+cu121` → `2.9`; null stays null. */
export function majorMinor(version: string | null | undefined): string | null {
  if (!version) {
    return null;
  }
  return version.split('+', 1)[0].split('.').slice(0, 2).join('.');
}

/** `PyTorch 2.9 · CUDA 12.1`, `PyTorch 2.13 · CPU`, `Python 3.11` without torch. */
export function versionsText(
  torch: string | null | undefined,
  cuda: string | null | undefined,
  python: string | null | undefined
): string {
  if (torch) {
    return `PyTorch ${majorMinor(torch)} · ${cuda ? `CUDA ${majorMinor(cuda)}` : 'CPU'}`;
  }
  return python ? `Python ${majorMinor(python)}` : 'no PyTorch';
}

/**
 * "recorded with PyTorch 2.9 · CUDA 12.1, running PyTorch 2.13 · CPU" when the
 * running environment has another PyTorch or CUDA (major.minor); else null.
 */
export function recordMismatch(
  record: NotebookRecord | null | undefined,
  env: Environment | null | undefined
): string | null {
  if (!record || !env) {
    return null;
  }
  const sameTorch = majorMinor(env.torch_version) === majorMinor(record.torch_version);
  const sameCuda = majorMinor(env.cuda_version) === majorMinor(record.cuda_version);
  if (sameTorch && sameCuda) {
    return null;
  }
  const recorded = versionsText(record.torch_version, record.cuda_version, record.python_version);
  const running = versionsText(env.torch_version, env.cuda_version, env.python_version);
  return `recorded with ${recorded}, running ${running}`;
}

/** The question asked before opening a notebook with a weaker match. */
export function weakMatchQuestion(resolution: Resolution): string {
  const record = resolution.record;
  const recorded = versionsText(record.torch_version, record.cuda_version, record.python_version);
  return (
    `This notebook was saved in ${record.display_name} (${recorded}), which is not ` +
    `on this server. ${resolution.display_name} has ${resolution.rule_text}, but not ` +
    'the same packages. Start the notebook in it?'
  );
}
