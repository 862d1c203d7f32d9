/** The create job's bar and following a job until it ends. */
import { describe, expect, it } from 'vitest';

import type { CreateJob, CreateStep } from '../src/api';
import { followJob, jobKernelName, jobProgress } from '../src/createjob';

function step(key: string, overrides: Partial<CreateStep> = {}): CreateStep {
  return {
    key,
    message: `${key} message`,
    state: 'running',
    done: null,
    total: null,
    detail: null,
    seconds: 1,
    ...overrides
  };
}

function job(overrides: Partial<CreateJob> = {}): CreateJob {
  return {
    id: 'abc123',
    action: 'create',
    name: 'demo',
    prefix: '/envs/demo',
    state: 'running',
    engine: 'rattler',
    cuda: '12.4',
    message: 'Waiting to start',
    error: null,
    cancelled: false,
    environment_id: null,
    warnings: [],
    seconds: 1,
    steps: [],
    ...overrides
  };
}

describe('jobProgress', () => {
  it('fills one share per step and the current step by its items', () => {
    expect(jobProgress(job()).fraction).toBe(0);
    const solving = jobProgress(job({ steps: [step('solve')] }));
    expect(solving).toEqual({ fraction: 0, label: 'solve message' });
    const downloading = jobProgress(
      job({ steps: [step('solve', { state: 'done' }), step('download', { done: 2, total: 4 })] })
    );
    expect(downloading.fraction).toBeCloseTo(1.5 / 5);
    expect(downloading.label).toBe('download message (2 of 4)');
    expect(jobProgress(job({ steps: [step('pip')] })).fraction).toBeCloseTo(3 / 5);
  });

  it('ends at 1 when done and says the error when failed', () => {
    expect(jobProgress(job({ state: 'done' }))).toEqual({ fraction: 1, label: 'Created demo' });
    const failed = job({ state: 'failed', error: { message: 'gpuenv-app conflicts', status: 422 } });
    expect(jobProgress(failed)).toEqual({ fraction: null, label: 'gpuenv-app conflicts' });
  });

  it('says a cancel is under way until the job has stopped', () => {
    const cancelling = job({ cancelled: true, steps: [step('solve', { state: 'done' }), step('pip')] });
    expect(jobProgress(cancelling)).toEqual({ fraction: 3 / 5, label: 'Cancelling…' });
    const stopped = job({
      state: 'failed',
      cancelled: true,
      error: { message: 'the create was cancelled; nothing was left behind', status: 499 }
    });
    expect(jobProgress(stopped).label).toBe('the create was cancelled; nothing was left behind');
  });

  it('names the kernel of a listed environment only', () => {
    expect(jobKernelName(job({ state: 'done', environment_id: 'conda-demo-1' }))).toBe(
      'gpuenv-conda-demo-1'
    );
    expect(jobKernelName(job({ environment_id: 'conda-demo-1' }))).toBeNull();
    expect(jobKernelName(job({ state: 'done' }))).toBeNull();
  });
});

describe('followJob', () => {
  it('polls until the job is no longer running and reports every answer', async () => {
    const answers = [job({ steps: [step('link')] }), job({ state: 'done', environment_id: 'x' })];
    const seen: string[] = [];
    const ended = await followJob(
      job(),
      async () => answers.shift()!,
      j => seen.push(j.state),
      1
    );
    expect(ended.state).toBe('done');
    expect(seen).toEqual(['running', 'running', 'done']);
  });
});
