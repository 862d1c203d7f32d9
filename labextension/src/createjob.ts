/**
 * Environment creates as the Lab shows them: how far a job has come (one bar
 * over its steps), what to say about it, and following it until it ends.
 * Pure functions and one polling loop; the form and notices render them.
 */
import type { CreateJob } from './api';

/** The steps of a create in the order the server runs them (pip only with a pip section). */
export const CREATE_STEPS = ['solve', 'download', 'link', 'pip', 'catalog'];
/** How often a running job is asked for again. */
export const JOB_POLL_MS = 500;
/** The kernel name of a catalog environment (jupyter_gpuenv/environments/model.py). */
export const KERNEL_NAME_PREFIX = 'gpuenv-';

export interface JobProgress {
  /** 0..1 over all steps; null while nothing has started. */
  fraction: number | null;
  /** "Solving the environment (3 of 5)" or the failure message. */
  label: string;
}

/** One bar for the whole job: each step an equal share, its items filling its share. */
export function jobProgress(job: CreateJob): JobProgress {
  if (job.state === 'done') {
    return { fraction: 1, label: `Created ${job.name ?? job.prefix ?? 'the environment'}` };
  }
  if (job.state === 'failed') {
    return { fraction: null, label: job.error?.message || 'The create failed' };
  }
  const current = job.steps[job.steps.length - 1];
  if (job.cancelled) {
    const index = current ? Math.max(0, CREATE_STEPS.indexOf(current.key)) : 0;
    return { fraction: index / CREATE_STEPS.length, label: 'Cancelling…' };
  }
  if (!current) {
    return { fraction: 0, label: job.message || 'Waiting to start' };
  }
  const index = Math.max(0, CREATE_STEPS.indexOf(current.key));
  const inner =
    current.total && current.done !== null ? Math.min(1, current.done / current.total) : 0;
  const count = current.total ? ` (${current.done ?? 0} of ${current.total})` : '';
  return {
    fraction: (index + inner) / CREATE_STEPS.length,
    label: `${current.message}${count}`
  };
}

/** The kernel of the job's environment once it is listed, else null. */
export function jobKernelName(job: CreateJob): string | null {
  return job.state === 'done' && job.environment_id
    ? `${KERNEL_NAME_PREFIX}${job.environment_id}`
    : null;
}

/** Poll `fetch(id)` until the job ends; `onUpdate` sees every answer. */
export async function followJob(
  job: CreateJob,
  fetch: (id: string) => Promise<CreateJob>,
  onUpdate: (job: CreateJob) => void,
  intervalMs = JOB_POLL_MS
): Promise<CreateJob> {
  let current = job;
  onUpdate(current);
  while (current.state === 'running') {
    await new Promise(resolve => setTimeout(resolve, intervalMs));
    current = await fetch(current.id);
    onUpdate(current);
  }
  return current;
}
