/**
 * "New environment" in the panel: paste an environment.yml or upload one, an
 * optional name and CUDA version, then a bar following the create job's steps
 * (solve, download, link, pip) until it is done or failed.
 */
import { addIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import type { CreateJob, CreateRequest } from './api';
import { jobProgress } from './createjob';

/** What the form asks Lab to do; index.ts supplies it. */
export interface CreateActions {
  /** POST the request, follow the job (calling `onUpdate`), refresh the list when done. */
  createEnvironment(request: CreateRequest, onUpdate: (job: CreateJob) => void): Promise<void>;
  /** Ask the running job to stop; the followed job then ends failed (cancelled). */
  cancelCreate(jobId: string): Promise<void>;
}

export function CreateEnvironmentSection({ actions }: { actions: CreateActions }): JSX.Element {
  const [open, setOpen] = React.useState(false);
  const [yaml, setYaml] = React.useState('');
  const [name, setName] = React.useState('');
  const [cuda, setCuda] = React.useState('');
  const [job, setJob] = React.useState<CreateJob | null>(null);
  const [error, setError] = React.useState('');
  const running = job?.state === 'running';

  const upload = async (files: FileList | null) => {
    const file = files?.[0];
    if (file) {
      setYaml(await file.text());
    }
  };

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setError('');
    setJob(null);
    const request: CreateRequest = { yaml };
    if (name.trim()) {
      request.name = name.trim();
    }
    if (cuda.trim()) {
      request.cuda = cuda.trim();
    }
    try {
      await actions.createEnvironment(request, setJob);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };

  const cancel = async () => {
    if (!job) {
      return;
    }
    try {
      await actions.cancelCreate(job.id);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };

  const progress = job ? jobProgress(job) : null;
  return (
    <section className="jp-GpuEnv-create" aria-label="New environment">
      <button
        type="button"
        className="jp-GpuEnv-button"
        aria-expanded={open}
        aria-controls="gpuenv-create-form"
        title="Create a conda environment from an environment.yml"
        onClick={() => setOpen(!open)}
      >
        <addIcon.react tag="span" className="jp-GpuEnv-buttonIcon" />
        New environment
      </button>
      {open ? (
        <form id="gpuenv-create-form" className="jp-GpuEnv-createForm" onSubmit={submit}>
          <label className="jp-GpuEnv-field">
            <span>environment.yml</span>
            <textarea
              className="jp-GpuEnv-yaml"
              aria-label="environment.yml"
              placeholder={'name: myenv\nchannels: [conda-forge]\ndependencies:\n  - python=3.11'}
              rows={8}
              value={yaml}
              disabled={running}
              onChange={e => setYaml(e.target.value)}
            />
          </label>
          <label className="jp-GpuEnv-field">
            <span>or upload a file</span>
            <input
              type="file"
              accept=".yml,.yaml,text/yaml"
              aria-label="Upload environment.yml"
              disabled={running}
              onChange={e => void upload(e.target.files)}
            />
          </label>
          <div className="jp-GpuEnv-createRow">
            <label className="jp-GpuEnv-field">
              <span>Name (optional)</span>
              <input
                type="text"
                aria-label="Environment name"
                value={name}
                disabled={running}
                onChange={e => setName(e.target.value)}
              />
            </label>
            <label className="jp-GpuEnv-field">
              <span>CUDA (optional)</span>
              <input
                type="text"
                aria-label="CUDA version"
                placeholder="host driver's"
                title="Solve for this CUDA version (e.g. 12.4, or none) instead of the host driver's"
                value={cuda}
                disabled={running}
                onChange={e => setCuda(e.target.value)}
              />
            </label>
          </div>
          <button
            type="submit"
            className="jp-GpuEnv-button jp-mod-accept"
            disabled={running || !yaml.trim()}
          >
            {running ? 'Creating…' : 'Create'}
          </button>
          {running ? (
            <button
              type="button"
              className="jp-GpuEnv-button jp-mod-warn"
              disabled={job?.cancelled}
              title="Stop this create and remove what it has made"
              onClick={() => void cancel()}
            >
              Cancel
            </button>
          ) : null}
          {progress && job ? (
            <div className="jp-GpuEnv-createJob" data-state={job.state} role="status" aria-live="polite">
              {job.state === 'failed' ? null : (
                <progress
                  className="jp-GpuEnv-createBar"
                  max={1}
                  value={progress.fraction ?? undefined}
                  aria-label="Create progress"
                />
              )}
              <span
                className={job.state === 'failed' ? 'jp-GpuEnv-createError' : 'jp-GpuEnv-createText'}
              >
                {progress.label}
              </span>
              {job.engine ? (
                <span className="jp-GpuEnv-muted">
                  {' '}
                  ({job.engine}
                  {job.cuda ? `, CUDA ${job.cuda}` : ', no CUDA'})
                </span>
              ) : null}
              {job.warnings.map((w, i) => (
                <p key={i} className="jp-GpuEnv-createWarning">
                  ⚠ {w}
                </p>
              ))}
            </div>
          ) : null}
          {error ? (
            <p className="jp-GpuEnv-createError" role="alert">
              {error}
            </p>
          ) : null}
        </form>
      ) : null}
    </section>
  );
}
