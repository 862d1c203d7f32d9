/** The GPU section: one card per GPU, or why there is none. */
import * as React from 'react';

import type { GpuSnapshot, KernelStatus } from './api';
import { ErrorBox, Loading } from './feedback';
import { driverSummary, GpuView, gpuViews, noGpuMessage, SessionRef } from './gpumodel';
import { gpuIcon } from './icons';
import { formatIdle } from './kernelnotice';
import { formatBytes, formatPercent, formatRetry } from './model';
import { Sparkline } from './sparklineview';
import type { GpuEnvStore } from './store';

export interface GpuSectionProps {
  snapshot: GpuSnapshot | null;
  store: GpuEnvStore;
  sessions: SessionRef[];
  /** The server's kernels (idle time, idle GPU warnings), by id. */
  kernels?: ReadonlyMap<string, KernelStatus>;
}

export function GpuSection(props: GpuSectionProps): JSX.Element {
  const { snapshot, store } = props;
  const health = store.gpuHealth;
  const views = gpuViews(snapshot, store.environments, props.sessions);
  let content: JSX.Element;
  if (!snapshot && health.lastError) {
    content = <ErrorBox error={health.lastError} retry={formatRetry(health.retryInMs)} />;
  } else if (!snapshot) {
    content = <Loading text="Reading GPU status…" />;
  } else if (!views.length) {
    const { title, reason } = noGpuMessage(snapshot);
    content = (
      <div className="jp-GpuEnv-noGpu" role="status">
        <gpuIcon.react tag="span" className="jp-GpuEnv-noGpuIcon" />
        <div>
          <strong>{title}</strong>
          {reason ? <p>{reason}</p> : null}
        </div>
      </div>
    );
  } else {
    content = (
      <ul
        className={`jp-GpuEnv-gpuList${health.lastError ? ' jp-mod-stale' : ''}`}
        aria-label="GPUs"
      >
        {views.map(view => (
          <GpuCard key={view.key} view={view} kernels={props.kernels} />
        ))}
      </ul>
    );
  }
  const summary = driverSummary(snapshot);
  return (
    <section className="jp-GpuEnv-section" aria-labelledby="gpuenv-gpus-heading">
      <h3 id="gpuenv-gpus-heading" className="jp-GpuEnv-sectionTitle">
        GPUs
        {summary ? <span className="jp-GpuEnv-sectionNote">{summary}</span> : null}
      </h3>
      {snapshot && health.lastError ? (
        <ErrorBox error={health.lastError} retry={formatRetry(health.retryInMs)} compact />
      ) : null}
      {content}
    </section>
  );
}

function GpuCard({
  view,
  kernels
}: {
  view: GpuView;
  kernels?: ReadonlyMap<string, KernelStatus>;
}): JSX.Element {
  const percent = view.memoryFraction === null ? null : Math.round(view.memoryFraction * 100);
  const level = percent === null ? '' : percent >= 90 ? ' jp-mod-high' : percent >= 70 ? ' jp-mod-mid' : '';
  return (
    <li className="jp-GpuEnv-gpu" data-gpu-index={view.title}>
      <div className="jp-GpuEnv-gpuHead">
        <span className="jp-GpuEnv-gpuTitle">{view.title}</span>
        <span className="jp-GpuEnv-gpuName" title={view.name}>
          {view.name}
        </span>
        {view.temperature !== null ? (
          <span className="jp-GpuEnv-gpuTemp" title="Temperature">
            {view.temperature} °C
          </span>
        ) : null}
      </div>
      <div
        className="jp-GpuEnv-meter"
        role="meter"
        aria-label={`${view.title} memory used`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent ?? undefined}
        aria-valuetext={view.memoryText}
      >
        <div className={`jp-GpuEnv-meterFill${level}`} style={{ width: `${percent ?? 0}%` }} />
      </div>
      <div className="jp-GpuEnv-gpuFigures">
        <span>Memory {view.memoryText}</span>
        <span>Util {formatPercent(view.utilization)}</span>
      </div>
      {view.history ? <GpuCharts view={view} /> : null}
      {view.details ? <div className="jp-GpuEnv-gpuDetails">{view.details}</div> : null}
      {view.processes.length ? (
        <ul className="jp-GpuEnv-procs" aria-label={`Processes on ${view.title}`}>
          {view.processes.map(proc => {
            const kernel = proc.kernelId ? kernels?.get(proc.kernelId) : undefined;
            const idle =
              kernel?.execution_state === 'busy' ? 'busy' : formatIdle(kernel?.idle_seconds);
            return (
            <li
              key={proc.key}
              className={proc.isKernel ? 'jp-GpuEnv-proc jp-mod-kernel' : 'jp-GpuEnv-proc'}
              title={proc.path || proc.label}
            >
              <div className="jp-GpuEnv-procMain">
                <span className="jp-GpuEnv-procName">{proc.label}</span>
                <span className="jp-GpuEnv-procMem">{proc.memory}</span>
              </div>
              {proc.memoryHistory ? (
                <Sparkline
                  className="jp-GpuEnv-procSpark"
                  points={proc.memoryHistory}
                  label={`GPU memory of ${proc.label} over time`}
                  maxGap={view.history?.maxGap}
                />
              ) : null}
              {proc.environment || idle ? (
                <div className="jp-GpuEnv-procEnv">
                  {proc.environment}
                  {idle ? <span className="jp-GpuEnv-procIdle">{idle}</span> : null}
                </div>
              ) : null}
              {kernel?.reclaim ? (
                <div className="jp-GpuEnv-procReclaim" role="alert">
                  {kernel.reclaim.message}
                </div>
              ) : null}
            </li>
            );
          })}
        </ul>
      ) : (
        <div className="jp-GpuEnv-muted jp-GpuEnv-noProcs">No kernels on this GPU</div>
      )}
      {view.hiddenProcesses ? (
        <div className="jp-GpuEnv-hidden">
          + {view.hiddenProcesses} process{view.hiddenProcesses === 1 ? '' : 'es'} of other users
        </div>
      ) : null}
    </li>
  );
}

/** Utilization and memory of one GPU over the recent past, as two sparklines. */
function GpuCharts({ view }: { view: GpuView }): JSX.Element | null {
  const history = view.history;
  if (!history) {
    return null;
  }
  return (
    <div className="jp-GpuEnv-gpuCharts">
      <div className="jp-GpuEnv-chart jp-mod-util">
        <span className="jp-GpuEnv-chartLabel">Util</span>
        <Sparkline
          points={history.utilization}
          label={`${view.title} utilization over time, 0 to 100 %`}
          min={0}
          max={100}
          maxGap={history.maxGap}
        />
      </div>
      <div className="jp-GpuEnv-chart jp-mod-memory">
        <span className="jp-GpuEnv-chartLabel">Mem</span>
        <Sparkline
          points={history.memory}
          label={`${view.title} memory used over time, of ${formatBytes(history.memoryTotal)}`}
          min={0}
          max={history.memoryTotal ?? undefined}
          maxGap={history.maxGap}
        />
      </div>
    </div>
  );
}
