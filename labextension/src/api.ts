/**
 * Typed client of the jupyter-gpuenv REST API (`/gpuenv/api/...`).
 *
 * Every request goes through `ServerConnection.makeRequest`, so the Jupyter
 * server's token and XSRF cookie are sent exactly as Lab's own requests send
 * them; failures become an `ApiError` carrying the HTTP status (0 when the
 * server could not be reached) and the server's JSON `message`.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { Resolution } from './record';

export type EnvironmentKind = 'conda' | 'venv' | 'docker';
export type Severity = 'ok' | 'warning' | 'error';

/** One check of the compatibility doctor. */
export interface Finding {
  severity: Severity;
  message: string;
  fix?: string | null;
}

/** The doctor's result for one environment against this host. */
export interface Compatibility {
  verdict: Severity;
  findings: Finding[];
}

/** One catalog entry, as `GET /gpuenv/api/environments` lists it. */
export interface Environment {
  id: string;
  name: string;
  kind: EnvironmentKind;
  display_name: string;
  kernel_name: string;
  location: Record<string, unknown>;
  python_version: string | null;
  python_executable?: string | null;
  torch_version: string | null;
  cuda_version: string | null;
  cudnn_version: string | null;
  torch_arch_list?: string[];
  ipykernel: boolean;
  labels: Record<string, string>;
  problems: string[];
  compatibility?: Compatibility | null;
}

/** A compute process on a GPU; kernel fields are set when it belongs to a kernel. */
export interface GpuProcess {
  pid: number;
  used_memory: number | null;
  name?: string | null;
  mig_device_uuid?: string | null;
  container_id?: string | null;
  kernel_id?: string | null;
  environment_id?: string | null;
  notebook_path?: string | null;
  user?: string | null;
  own?: boolean;
}

/** One invalid `c.GpuEnv` setting, left at its default (or its entry left out). */
export interface SettingProblem {
  setting: string;
  value: string;
  expected: string;
  consequence: string;
  message: string;
}

/** `GET /gpuenv/api/status`: the extension's version and its invalid settings. */
export interface ServerStatus {
  version: string;
  /** False on a JupyterHub user's server, whose configuration the Hub's admin writes. */
  admin: boolean;
  problems: SettingProblem[];
}

/** One GPU: memory in bytes, utilization in percent, temperature in °C. */
export interface GpuDevice {
  index: number;
  uuid?: string | null;
  name?: string | null;
  memory_total?: number | null;
  memory_used?: number | null;
  memory_free?: number | null;
  utilization_gpu?: number | null;
  utilization_memory?: number | null;
  temperature?: number | null;
  power_draw?: number | null;
  power_limit?: number | null;
  compute_capability?: string | null;
  mig_mode?: string | null;
  processes: GpuProcess[];
  hidden_processes?: number;
}

/** `GET /gpuenv/api/gpus`: the latest shared NVML sample, or why there is none. */
export interface GpuSnapshot {
  available: boolean;
  reason: string | null;
  state?: 'ok' | 'unavailable' | 'sampling' | string;
  driver_version?: string | null;
  cuda_driver_version?: string | null;
  gpu_count?: number;
  gpus: GpuDevice[];
  sampled_at?: number | null;
  /** Only when asked for with `?history=SECONDS`. */
  history?: GpuHistory;
}

/**
 * Recent GPU use (`history` of `GET /gpuenv/api/gpus?history=SECONDS`): every series
 * has one value per timestamp, null where the GPU or kernel was not in that sample.
 */
export interface GpuHistory {
  seconds: number;
  window: number;
  interval: number;
  /** Unix seconds, oldest first. */
  timestamps: number[];
  gpus: {
    index: number;
    uuid: string | null;
    memory_total: number | null;
    utilization_gpu: (number | null)[];
    memory_used: (number | null)[];
  }[];
  kernels: {
    kernel_id: string;
    environment_id: string | null;
    gpus: number[];
    memory_used: (number | null)[];
    /** Percent of one GPU's SMs its processes kept busy, summed over its GPUs. */
    utilization_sm?: (number | null)[];
  }[];
}

/** How a kernel's previous process ended (`last_exit` of `GET /gpuenv/api/kernels/{id}`). */
export interface KernelExit {
  code: number | null;
  signal: string | null;
  oom_killed: boolean;
  reason: string;
  at: string;
  requested: boolean;
  log_tail?: string[];
}

/** A kernel due to be shut down for holding GPU memory while idle. */
export interface ReclaimWarning {
  kernel_id: string;
  name?: string | null;
  idle_seconds: number;
  gpu_memory: number;
  shutdown_at: string;
  message: string;
}

/** Where Swarm runs a kernel (`placement` of a kernel in swarm mode). */
export interface SwarmPlacement {
  service: string;
  node: string;
  node_addr: string;
  gpus: string[];
}

/** One kernel of the server, as `GET /gpuenv/api/kernels/{id}` describes it. */
export interface KernelStatus {
  id: string;
  name: string | null;
  kind: 'docker' | 'local' | null;
  environment: { id: string; name: string | null; kind: string | null } | null;
  container: { id: string; name: string | null; image: string | null } | null;
  /** Swarm mode: the kernel's service, the node it runs on and the GPU ids Swarm gave it. */
  placement?: SwarmPlacement | null;
  gpus: { index: number; uuid: string | null; used_memory: number | null }[];
  execution_state: string | null;
  idle_seconds: number | null;
  connection: 'connected' | 'disconnected';
  docker: { reachable: boolean; reason: string | null; since: string | null };
  restart_count: number;
  last_exit: KernelExit | null;
  reclaim: ReclaimWarning | null;
  /** The doctor's error for this host, when the kernel started anyway (block_incompatible off). */
  start_warning?: string | null;
}

/** `GET /gpuenv/api/kernels`. */
export interface KernelsListing {
  kernels: KernelStatus[];
  gpu_idle_timeout: number | null;
  reclaimed: ReclaimWarning[];
}

/** How far the catalog's scan has come (`scan` of a partial listing, `listing` of progress). */
export interface ScanProgress {
  state: 'idle' | 'discovering' | 'probing';
  probed: number;
  total: number | null;
  message: string;
  seconds: number | null;
}

/** `GET /gpuenv/api/environments?partial=true`: never waits for a scan. */
export interface PartialListing {
  environments: Environment[];
  /** False while the first scan runs: `environments` are those probed so far. */
  complete: boolean;
  scan: ScanProgress;
}

/** One step of a kernel start (a kernel-layer build, a wait on something). */
export interface StartStep {
  key: string;
  message: string;
  state: 'running' | 'done' | 'failed';
  waiting_for: string | null;
  detail: string | null;
  seconds: number;
}

/** A kernel start as `GET /gpuenv/api/progress` lists it. */
export interface StartProgress {
  kernel_id: string;
  environment: { id: string | null; name: string | null; display_name: string | null };
  state: 'starting' | 'ready' | 'failed';
  message: string;
  reason: string | null;
  started: string;
  ended: string | null;
  seconds: number;
  steps: StartStep[];
}

/** `GET /gpuenv/api/progress`. */
export interface ProgressReport {
  starts: StartProgress[];
  listing: ScanProgress;
}

/** One step of an environment create: solve, download, link, pip, catalog. */
export interface CreateStep {
  key: string;
  message: string;
  state: 'running' | 'done' | 'failed';
  done: number | null;
  total: number | null;
  detail: string | null;
  seconds: number;
}

/** A create, clone or restore (`GET /gpuenv/api/environments/jobs/{id}`). */
export interface CreateJob {
  id: string;
  action: 'create' | 'clone' | 'restore';
  name: string | null;
  prefix: string | null;
  state: 'running' | 'done' | 'failed';
  engine: string | null;
  cuda: string | null;
  message: string;
  error: { message: string; status: number } | null;
  /** A cancel was asked for (the job then fails with 499 once it has stopped). */
  cancelled: boolean;
  environment_id: string | null;
  warnings: string[];
  seconds: number;
  steps: CreateStep[];
}

/** The body of `POST /gpuenv/api/environments` for a create from an environment.yml. */
export interface CreateRequest {
  yaml: string;
  name?: string;
  cuda?: string;
}

/** `POST /gpuenv/api/notebooks/restore`: here already, an image to pull, or a create job. */
export interface RestoreAnswer {
  path: string;
  kind: string;
  name: string;
  state: 'present' | 'pull' | 'creating';
  kernel_name?: string;
  display_name?: string;
  environment_id?: string;
  image?: string | null;
  image_digest?: string | null;
  pull_command?: string | null;
  job?: CreateJob;
}

/** The three flavours of `conda env export`. */
export type ExportMode = 'full' | 'no-builds' | 'from-history';

/** A downloaded environment.yml. */
export interface ExportedFile {
  filename: string;
  text: string;
}

/** A failed API call: `status` is the HTTP status, 0 when the server is unreachable. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly url: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The query string flags of one export mode (`no_builds`, `from_history`). */
export function exportQuery(mode: ExportMode): Record<string, string> {
  return {
    no_builds: mode === 'no-builds' ? 'true' : 'false',
    from_history: mode === 'from-history' ? 'true' : 'false'
  };
}

/** The file name from a `Content-Disposition` header, or `fallback`. */
export function filenameFromDisposition(
  header: string | null,
  fallback: string
): string {
  if (header) {
    const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(header);
    if (star) {
      try {
        return sanitizeFilename(decodeURIComponent(star[1].trim().replace(/^"|"$/g, '')), fallback);
      } catch {
        // Malformed percent-encoding: fall through to the plain parameter.
      }
    }
    const plain = /filename\s*=\s*("([^"]*)"|[^;]+)/i.exec(header);
    if (plain) {
      return sanitizeFilename((plain[2] ?? plain[1]).trim(), fallback);
    }
  }
  return fallback;
}

function sanitizeFilename(name: string, fallback: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  return base.trim() || fallback;
}

/** Talks to `/gpuenv/api/`; one instance is shared by the panel and the status bar. */
export class GpuEnvClient {
  readonly settings: ServerConnection.ISettings;

  constructor(settings?: ServerConnection.ISettings) {
    this.settings = settings ?? ServerConnection.makeSettings();
  }

  /** The catalog (the server answers from its cache; no probing when warm). */
  async listEnvironments(): Promise<Environment[]> {
    const body = await this.requestJson<{ environments: Environment[] }>(
      'environments'
    );
    return body.environments;
  }

  /** The catalog now: before the first scan ends, what is probed so far and the progress. */
  async listEnvironmentsPartial(): Promise<PartialListing> {
    const response = await this.request('environments', {}, { partial: 'true' });
    return (await response.json()) as PartialListing;
  }

  /** Kernel starts under way (and lately ended) with their steps, and the catalog's scan. */
  async getProgress(): Promise<ProgressReport> {
    return this.requestJson<ProgressReport>('progress');
  }

  /** Re-scan every source on the server, then answer the new catalog. */
  async refreshEnvironments(): Promise<Environment[]> {
    const body = await this.requestJson<{ environments: Environment[] }>(
      'environments/refresh',
      { method: 'POST' }
    );
    return body.environments;
  }

  /** The extension's version and the invalid settings of its configuration. */
  async getStatus(): Promise<ServerStatus> {
    return this.requestJson<ServerStatus>('status');
  }

  /**
   * The latest GPU sample (never waits on NVML server-side); with `historySeconds`,
   * also that many seconds of recent GPU use.
   */
  async getGpus(historySeconds?: number): Promise<GpuSnapshot> {
    if (historySeconds === undefined) {
      return this.requestJson<GpuSnapshot>('gpus');
    }
    const response = await this.request('gpus', {}, { history: String(historySeconds) });
    return this.parseJson<GpuSnapshot>(response, 'gpus');
  }

  /** Every kernel of the server: last exits, Docker reach, idle GPU warnings. */
  async listKernels(): Promise<KernelsListing> {
    return this.requestJson<KernelsListing>('kernels');
  }

  /** One kernel (404 once it is shut down). */
  async getKernel(id: string): Promise<KernelStatus> {
    return this.requestJson<KernelStatus>(`kernels/${encodeURIComponent(id)}`);
  }

  /** An environment.yml as conda would write it, with the server's file name. */
  async exportEnvironment(id: string, mode: ExportMode): Promise<ExportedFile> {
    const path = `environments/${encodeURIComponent(id)}/export`;
    const response = await this.request(path, {}, exportQuery(mode));
    const text = await response.text();
    const filename = filenameFromDisposition(
      response.headers.get('Content-Disposition'),
      `${id}-environment.yml`
    );
    return { filename, text };
  }

  /** This server's environment for the record a notebook carries (404: none matches). */
  async resolveNotebook(path: string): Promise<Resolution> {
    const response = await this.request('resolve', {}, { path });
    return (await response.json()) as Resolution;
  }

  /** Start creating an environment from an environment.yml; answers the job to follow. */
  async createEnvironment(request: CreateRequest): Promise<CreateJob> {
    return this.requestJson<CreateJob>('environments', {
      method: 'POST',
      body: JSON.stringify(request)
    });
  }

  /** A create job's steps and outcome (poll until `state` is not running). */
  async getCreateJob(id: string): Promise<CreateJob> {
    return this.requestJson<CreateJob>(`environments/jobs/${encodeURIComponent(id)}`);
  }

  /** Ask a running create to stop; it removes what it made (409 once it has ended). */
  async cancelCreateJob(id: string): Promise<CreateJob> {
    return this.requestJson<CreateJob>(`environments/jobs/${encodeURIComponent(id)}`, {
      method: 'DELETE'
    });
  }

  /** Remove a conda environment this user owns (the server refuses others). */
  async removeEnvironment(id: string): Promise<void> {
    await this.request(`environments/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  /** Rebuild the environment a notebook recorded when it is missing here. */
  async restoreNotebook(path: string): Promise<RestoreAnswer> {
    return this.requestJson<RestoreAnswer>('notebooks/restore', {
      method: 'POST',
      body: JSON.stringify({ path })
    });
  }

  /** The absolute URL of an API path (query values are URL-encoded). */
  url(path: string, query?: Record<string, string>): string {
    const base = URLExt.join(this.settings.baseUrl, 'gpuenv', 'api', path);
    return query ? base + URLExt.objectToQueryString(query) : base;
  }

  private async requestJson<T>(path: string, init: RequestInit = {}): Promise<T> {
    return this.parseJson<T>(await this.request(path, init), path);
  }

  private async parseJson<T>(response: Response, path: string): Promise<T> {
    try {
      return (await response.json()) as T;
    } catch (error) {
      throw new ApiError(
        response.status,
        `The server answered ${path} with something that is not JSON`,
        response.url
      );
    }
  }

  private async request(
    path: string,
    init: RequestInit,
    query?: Record<string, string>
  ): Promise<Response> {
    const url = this.url(path, query);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      throw new ApiError(0, `Cannot reach the Jupyter server (${String(error)})`, url);
    }
    if (!response.ok) {
      throw new ApiError(response.status, await errorMessage(response), url);
    }
    return response;
  }
}

/** The `message` of a JSON error body, else the HTTP reason phrase. */
async function errorMessage(response: Response): Promise<string> {
  const fallback = response.statusText || `HTTP ${response.status}`;
  let text = '';
  try {
    text = await response.text();
  } catch {
    return fallback;
  }
  try {
    const body = JSON.parse(text) as { message?: unknown; reason?: unknown };
    if (typeof body.message === 'string' && body.message) {
      return body.message;
    }
    if (typeof body.reason === 'string' && body.reason) {
      return body.reason;
    }
  } catch {
    // Not JSON (a proxy's HTML page, for instance): use the reason phrase.
  }
  return fallback;
}
