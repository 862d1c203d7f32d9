/**
 * What the environment cards show, and the shared formatting, error and poll
 * rules, computed from the REST payloads (GPU views are in gpumodel.ts).
 *
 * Pure functions only (no DOM, no Lab services): the widgets stay thin and
 * every formatting or matching rule here is unit-tested on plain data.
 */
import type { Compatibility, Environment, Finding, Severity } from './api';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

/** Bytes as a short human figure: "12.3 GiB", "512 MiB", "—" when unknown. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) {
    return '—';
  }
  if (bytes >= GIB) {
    const gib = bytes / GIB;
    return `${gib >= 100 ? gib.toFixed(0) : gib.toFixed(1)} GiB`;
  }
  if (bytes >= MIB) {
    return `${Math.round(bytes / MIB)} MiB`;
  }
  if (bytes >= 1024) {
    return `${Math.round(bytes / 1024)} KiB`;
  }
  return `${Math.round(bytes)} B`;
}

/** A percentage for display ("37 %"), "—" when NVML could not tell. */
export function formatPercent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return '—';
  }
  return `${Math.round(value)} %`;
}

/** The last path segment of a notebook path ("work/train.ipynb" -> "train.ipynb"). */
export function notebookName(path: string | null | undefined): string {
  if (!path) {
    return '';
  }
  const parts = path.split('/').filter(Boolean);
  return parts.length ? parts[parts.length - 1] : path;
}

/** One labelled version figure of an environment row. */
export interface VersionFact {
  label: string;
  value: string;
  /** True when the value says "absent" rather than a version (drawn muted). */
  missing: boolean;
}

/** Python, PyTorch, CUDA (and cuDNN when known) of an environment, in row order. */
export function versionFacts(env: Environment): VersionFact[] {
  const facts: VersionFact[] = [
    fact('Python', env.python_version, 'unknown'),
    fact('PyTorch', env.torch_version, 'not installed')
  ];
  if (env.torch_version) {
    facts.push(fact('CUDA', env.cuda_version, 'CPU build'));
  } else {
    facts.push(fact('CUDA', env.cuda_version, '—'));
  }
  if (env.cudnn_version) {
    facts.push(fact('cuDNN', env.cudnn_version, ''));
  }
  return facts;
}

function fact(label: string, value: string | null | undefined, absent: string): VersionFact {
  return value ? { label, value, missing: false } : { label, value: absent, missing: true };
}

/** Where an environment lives, for a tooltip: prefix path or image reference. */
export function locationText(env: Environment): string {
  const loc = env.location ?? {};
  const parts: string[] = [];
  for (const key of ['prefix', 'image', 'conda_env']) {
    const value = loc[key];
    if (typeof value === 'string' && value) {
      parts.push(key === 'conda_env' ? `conda env ${value}` : value);
    }
  }
  return parts.join(' · ');
}

/** The catalog entry whose kernelspec is `kernelName`, if any. */
export function environmentForKernel(
  envs: readonly Environment[] | null | undefined,
  kernelName: string | null | undefined
): Environment | undefined {
  if (!envs || !kernelName) {
    return undefined;
  }
  return envs.find(env => env.kernel_name === kernelName);
}

/** The badge drawn for a compatibility verdict; null when there is nothing to flag. */
export interface CompatibilityBadge {
  severity: Exclude<Severity, 'ok'>;
  label: string;
  /** Every finding as one line each (the hover text). */
  title: string;
  findings: Finding[];
}

const SEVERITY_RANK: Record<Severity, number> = { ok: 0, warning: 1, error: 2 };

/** A warning/error badge for the doctor's verdict, listing the findings worth reading. */
export function compatibilityBadge(
  compatibility: Compatibility | null | undefined
): CompatibilityBadge | null {
  if (!compatibility) {
    return null;
  }
  const findings = (compatibility.findings ?? []).filter(f => f.severity !== 'ok');
  const worst = findings.reduce<Severity>(
    (acc, f) => (SEVERITY_RANK[f.severity] > SEVERITY_RANK[acc] ? f.severity : acc),
    compatibility.verdict ?? 'ok'
  );
  if (worst === 'ok') {
    return null;
  }
  findings.sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity]);
  const title = findings
    .map(f => (f.fix ? `${f.message} — Fix: ${f.fix}` : f.message))
    .join('\n');
  return {
    severity: worst,
    label: worst === 'error' ? 'Incompatible' : 'Warning',
    title: title || (worst === 'error' ? 'Incompatible with this host' : 'Check compatibility'),
    findings
  };
}

/** A failed request as shown to people: a headline and what to do. */
export interface ErrorView {
  title: string;
  detail: string;
}

/** Headline and advice for an API failure (`status` 0 means unreachable). */
export function describeError(error: { status: number; message: string }): ErrorView {
  const message = error.message || '';
  switch (error.status) {
    case 0:
      return {
        title: 'Cannot reach the Jupyter server',
        detail: 'Check that the server is still running.'
      };
    case 401:
    case 403:
      return {
        title: 'Not allowed',
        detail: `The server refused this request (${error.status}${message ? `: ${message}` : ''}). Log in again or ask your administrator for access.`
      };
    case 404:
      return {
        title: 'Not found',
        detail: message || 'The jupyter_gpuenv server extension may not be enabled on this server.'
      };
    case 503:
      return {
        title: 'Docker is not available',
        detail: message || 'The Docker engine does not answer. Local environments still work.'
      };
    default:
      return {
        title: `Server error (${error.status})`,
        detail: message || 'The server could not answer this request.'
      };
  }
}

/** Health of the GPU status poll, folded from its ticks (drives "retrying in …"). */
export interface PollHealth {
  failures: number;
  lastError: { status: number; message: string } | null;
  retryInMs: number | null;
  lastSuccessAt: number | null;
}

export const INITIAL_POLL_HEALTH: PollHealth = {
  failures: 0,
  lastError: null,
  retryInMs: null,
  lastSuccessAt: null
};

/** One tick of a Lumino Poll: its phase, the interval to the next tick, its payload. */
export interface PollTick {
  phase: string;
  interval: number;
  payload?: unknown;
  at: number;
}

/** The poll health after `tick`: failures count up on rejection and reset on success. */
export function nextPollHealth(prev: PollHealth, tick: PollTick): PollHealth {
  if (tick.phase === 'rejected') {
    const payload = tick.payload as { status?: unknown; message?: unknown } | undefined;
    return {
      failures: prev.failures + 1,
      lastError: {
        status: typeof payload?.status === 'number' ? payload.status : 0,
        message: typeof payload?.message === 'string' ? payload.message : String(payload ?? '')
      },
      retryInMs: Number.isFinite(tick.interval) ? tick.interval : null,
      lastSuccessAt: prev.lastSuccessAt
    };
  }
  if (tick.phase === 'resolved') {
    return { failures: 0, lastError: null, retryInMs: null, lastSuccessAt: tick.at };
  }
  return prev;
}

/** "retrying in 15 s" / "retrying in 2 min" for a backoff delay. */
export function formatRetry(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) {
    return '';
  }
  const seconds = Math.max(1, Math.round(ms / 1000));
  return seconds < 90 ? `retrying in ${seconds} s` : `retrying in ${Math.round(seconds / 60)} min`;
}

/** The export menu's choices, in order, with the words shown to people. */
export const EXPORT_CHOICES: ReadonlyArray<{
  mode: 'full' | 'no-builds' | 'from-history';
  label: string;
  hint: string;
}> = [
  { mode: 'full', label: 'Full', hint: 'Every package with its build (conda env export)' },
  { mode: 'no-builds', label: 'No builds', hint: 'Versions without build strings (--no-builds)' },
  { mode: 'from-history', label: 'From history', hint: 'Only what was explicitly requested (--from-history)' }
];
