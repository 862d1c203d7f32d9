/**
 * What the Lab says while a kernel starts slowly (a kernel-layer build, a wait on
 * something) and when that start ends. Pure functions, like model.ts.
 */
import type { StartProgress } from './api';

/** A start shows a notice once it has taken this long (quick starts stay silent). */
export const SHOW_START_AFTER_SECONDS = 1;

export type StartNoticeType = 'in-progress' | 'success' | 'error';

export interface StartNotice {
  type: StartNoticeType;
  message: string;
}

/** The environment's short name, else the kernel id's prefix. */
export function startName(start: StartProgress): string {
  return start.environment.name || `Kernel ${start.kernel_id.slice(0, 8)}`;
}

/** "12 s", "2m 05s". */
export function formatSeconds(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  if (total < 60) {
    return `${total} s`;
  }
  return `${Math.floor(total / 60)}m ${String(total % 60).padStart(2, '0')}s`;
}

/** The notice for one start: its current step while it runs, then ready or why it failed. */
export function startNotice(start: StartProgress): StartNotice {
  const name = startName(start);
  if (start.state === 'failed') {
    return { type: 'error', message: `${name}: the kernel did not start — ${start.reason ?? start.message}` };
  }
  if (start.state === 'ready') {
    return { type: 'success', message: `${name}: ${start.message}` };
  }
  const steps = start.steps.filter(step => step.key !== 'ready');
  const current = steps[steps.length - 1];
  const count = steps.length ? ` (step ${steps.length})` : '';
  const text = current ? current.message : 'Starting the kernel';
  return {
    type: 'in-progress',
    message: `Starting ${name}${count}: ${text} — ${formatSeconds(start.seconds)}`
  };
}

/** Whether a start the page has not shown yet deserves a notice now. */
export function shouldShowStart(start: StartProgress): boolean {
  return start.state === 'starting' && start.seconds >= SHOW_START_AFTER_SECONDS;
}
