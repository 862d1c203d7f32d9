/**
 * What the Lab says about a kernel's health: why it restarted, how long it has
 * been idle, and the status bar's warning. Pure functions, like model.ts.
 */
import type { KernelExit, KernelStatus } from './api';
import { notebookName } from './model';

/** The notice for a kernel that restarted by itself, or null when there is nothing to say. */
export function restartNotice(status: KernelStatus, path: string): string | null {
  const exit: KernelExit | null = status.last_exit;
  if (!exit || exit.requested) {
    return null;
  }
  const name = notebookName(path) || `Kernel ${status.id.slice(0, 8)}`;
  return `${name}: the kernel restarted — ${exit.reason}`;
}

/**
 * The notice for a kernel started although the doctor judged its environment
 * incompatible with this host (the server's `block_incompatible` is off), or null.
 * Short enough for a notification; the doctor's message and fix are its details.
 */
export function startWarningNotice(status: KernelStatus): string | null {
  if (!status.start_warning) {
    return null;
  }
  const env = status.environment?.name;
  const what = env ? `${env} will not work` : 'its environment will not work';
  return `Kernel ${status.id.slice(0, 8)} started although ${what} on this host.`;
}

/** "idle 12m 05s", for the GPU section and the status bar. */
export function formatIdle(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '';
  }
  const total = Math.floor(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  if (hours) {
    return `idle ${hours}h ${String(minutes).padStart(2, '0')}m`;
  }
  return `idle ${minutes}m ${String(rest).padStart(2, '0')}s`;
}

/** The status bar's short warning for the current kernel, or null. */
export function kernelWarning(status: KernelStatus | undefined): string | null {
  if (!status) {
    return null;
  }
  if (status.connection === 'disconnected') {
    return 'disconnected from Docker';
  }
  if (status.reclaim) {
    const at = new Date(status.reclaim.shutdown_at);
    const time = isNaN(at.getTime())
      ? ''
      : ` at ${at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
    return `idle GPU kernel: shut down${time}`;
  }
  if (status.start_warning) {
    return 'incompatible with this host';
  }
  return null;
}
