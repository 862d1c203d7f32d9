/**
 * The "GPU Environments" sidebar: environments with their versions and
 * actions, and live GPU status. Rendering only; data comes from the store,
 * the current notebook from the watcher, and every rule of what to show
 * from model.ts.
 */
import {
  addIcon,
  caretDownIcon,
  caretRightIcon,
  downloadIcon,
  ReactWidget,
  refreshIcon
} from '@jupyterlab/ui-components';
import * as React from 'react';

import type { Environment, ExportMode, GpuSnapshot } from './api';
import type { ActiveKernelWatcher } from './activekernel';
import { gpuIcon } from './icons';
import {
  compatibilityBadge,
  describeError,
  driverSummary,
  environmentForKernel,
  EXPORT_CHOICES,
  formatPercent,
  formatRetry,
  GpuView,
  gpuViews,
  locationText,
  noGpuMessage,
  notebookName,
  SessionRef,
  versionFacts
} from './model';
import type { GpuEnvStore } from './store';

/** What the panel can ask Lab to do; index.ts supplies them. */
export interface PanelActions {
  useInCurrentNotebook(env: Environment): Promise<void>;
  newNotebook(env: Environment): Promise<void>;
  exportEnvironment(env: Environment, mode: ExportMode): Promise<void>;
  /** Re-scan environments on the server, then refresh Lab's kernelspecs. */
  refresh(): Promise<void>;
  /** False when Lab knows the kernelspecs and this one is not among them. */
  hasKernelspec(kernelName: string): boolean;
  /** Running sessions, to name the notebooks of GPU processes. */
  sessions(): SessionRef[];
}

export const PANEL_ID = 'gpuenv-panel';

export class GpuEnvPanel extends ReactWidget {
  constructor(
    private readonly _store: GpuEnvStore,
    private readonly _watcher: ActiveKernelWatcher,
    private readonly _actions: PanelActions
  ) {
    super();
    this.id = PANEL_ID;
    this.addClass('jp-GpuEnv');
    this.title.icon = gpuIcon;
    this.title.caption = 'GPU Environments';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'GPU Environments');
    _store.changed.connect(this._onChange, this);
    _watcher.changed.connect(this._onChange, this);
  }

  dispose(): void {
    this._store.changed.disconnect(this._onChange, this);
    this._watcher.changed.disconnect(this._onChange, this);
    super.dispose();
  }

  /** Re-render (the kernelspec list or the sessions changed). */
  refreshView(): void {
    this.update();
  }

  protected onAfterShow(): void {
    this._store.setGpuConsumer('panel', true);
    if (!this._store.environments && !this._store.environmentsError) {
      void this._store.loadEnvironments();
    }
    this.update();
  }

  protected onAfterHide(): void {
    this._store.setGpuConsumer('panel', false);
  }

  protected render(): JSX.Element {
    const active = this._watcher.current;
    return (
      <PanelView
        store={this._store}
        activeKernelName={active?.kernelName ?? null}
        activePath={active?.path ?? ''}
        hasNotebook={this._watcher.notebook !== null}
        actions={this._actions}
        sessions={this._actions.sessions()}
      />
    );
  }

  private _onChange(): void {
    if (this.isVisible) {
      this.update();
    }
  }
}

interface PanelViewProps {
  store: GpuEnvStore;
  activeKernelName: string | null;
  activePath: string;
  hasNotebook: boolean;
  actions: PanelActions;
  sessions: SessionRef[];
}

function PanelView(props: PanelViewProps): JSX.Element {
  const { store } = props;
  const busy = store.refreshing || store.loadingEnvironments;
  return (
    <div className="jp-GpuEnv-body">
      <header className="jp-GpuEnv-header">
        <h2 className="jp-GpuEnv-title">GPU Environments</h2>
        <button
          type="button"
          className="jp-GpuEnv-iconButton"
          aria-label="Refresh environments and GPU status"
          title="Re-scan environments and refresh GPU status"
          disabled={store.refreshing}
          onClick={() => void props.actions.refresh()}
        >
          <refreshIcon.react
            tag="span"
            className={busy ? 'jp-GpuEnv-spin' : undefined}
          />
        </button>
      </header>
      <EnvironmentsSection {...props} />
      <GpuSection
        snapshot={store.gpus}
        store={store}
        sessions={props.sessions}
      />
    </div>
  );
}

function EnvironmentsSection(props: PanelViewProps): JSX.Element {
  const { store, activeKernelName } = props;
  const envs = store.environments;
  const activeEnv = environmentForKernel(envs, activeKernelName);
  let content: JSX.Element;
  if (store.environmentsError && !envs) {
    content = <ErrorBox error={store.environmentsError} />;
  } else if (!envs) {
    content = <Loading text="Looking for environments…" />;
  } else if (envs.length === 0) {
    content = (
      <p className="jp-GpuEnv-empty">
        No environments found. Configure <code>c.GpuEnv.conda_envs_dirs</code>,{' '}
        <code>venv_dirs</code> or <code>docker_images</code>, then refresh.
      </p>
    );
  } else {
    content = (
      <ul className="jp-GpuEnv-envList" aria-label="Environments">
        {envs.map(env => (
          <EnvironmentRow
            key={env.id}
            env={env}
            active={activeEnv?.id === env.id}
            activePath={props.activePath}
            hasNotebook={props.hasNotebook}
            actions={props.actions}
          />
        ))}
      </ul>
    );
  }
  return (
    <section className="jp-GpuEnv-section" aria-labelledby="gpuenv-envs-heading">
      <h3 id="gpuenv-envs-heading" className="jp-GpuEnv-sectionTitle">
        Environments
        {envs ? <span className="jp-GpuEnv-count">{envs.length}</span> : null}
      </h3>
      {store.environmentsError && envs ? (
        <ErrorBox error={store.environmentsError} compact />
      ) : null}
      {content}
    </section>
  );
}

interface RowProps {
  env: Environment;
  active: boolean;
  activePath: string;
  hasNotebook: boolean;
  actions: PanelActions;
}

function EnvironmentRow(props: RowProps): JSX.Element {
  const { env, active, actions } = props;
  const [busy, setBusy] = React.useState<'' | 'use' | 'new' | 'export'>('');
  const [exportOpen, setExportOpen] = React.useState(false);
  const firstChoice = React.useRef<HTMLButtonElement>(null);
  const badge = compatibilityBadge(env.compatibility);
  const runnable = actions.hasKernelspec(env.kernel_name);
  const noSpec = runnable ? '' : 'No kernel for this environment yet (see its problems)';
  const exportId = `gpuenv-export-${env.id}`;

  React.useEffect(() => {
    if (exportOpen) {
      firstChoice.current?.focus();
    }
  }, [exportOpen]);

  const run = async (what: 'use' | 'new' | 'export', action: () => Promise<void>) => {
    setBusy(what);
    try {
      await action();
    } finally {
      setBusy('');
    }
  };

  const useTitle = !props.hasNotebook
    ? 'Open a notebook first'
    : active
      ? 'The current notebook already runs in this environment'
      : noSpec || `Switch the current notebook's kernel to ${env.display_name}`;

  return (
    <li
      className={`jp-GpuEnv-env${active ? ' jp-mod-active' : ''}`}
      data-env-id={env.id}
      data-kernel-name={env.kernel_name}
      aria-current={active ? 'true' : undefined}
    >
      <div className="jp-GpuEnv-envHead">
        <span className="jp-GpuEnv-envName" title={locationText(env) || env.display_name}>
          {env.display_name}
        </span>
        <span className={`jp-GpuEnv-kind jp-GpuEnv-kind-${env.kind}`}>{env.kind}</span>
      </div>
      {active ? (
        <div className="jp-GpuEnv-activeNote">
          <span className="jp-GpuEnv-dot" aria-hidden="true" />
          In use by {notebookName(props.activePath) || 'the current notebook'}
        </div>
      ) : null}
      <dl className="jp-GpuEnv-versions">
        {versionFacts(env).map(f => (
          <div key={f.label} className="jp-GpuEnv-fact">
            <dt>{f.label}</dt>
            <dd className={f.missing ? 'jp-GpuEnv-muted' : undefined}>{f.value}</dd>
          </div>
        ))}
      </dl>
      {badge ? (
        <details className={`jp-GpuEnv-compat jp-GpuEnv-compat-${badge.severity}`}>
          <summary title={badge.title}>
            <caretRightIcon.react tag="span" className="jp-GpuEnv-compatCaret" />
            <span className="jp-GpuEnv-badge">{badge.label}</span>
            <span className="jp-GpuEnv-compatSummary">
              {badge.findings[0]?.message ?? badge.title}
            </span>
            <span className="jp-GpuEnv-compatCount">
              {badge.findings.length === 1
                ? '1 compatibility finding'
                : `${badge.findings.length} compatibility findings`}
            </span>
          </summary>
          <ul>
            {badge.findings.map((f, i) => (
              <li key={i} className={`jp-GpuEnv-finding jp-GpuEnv-finding-${f.severity}`}>
                {f.message}
                {f.fix ? (
                  <div className="jp-GpuEnv-fix">
                    <strong>Fix:</strong> {f.fix}
                  </div>
                ) : null}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
      {env.problems.length ? (
        <ul className="jp-GpuEnv-problems" aria-label="Problems">
          {env.problems.map((p, i) => (
            <li key={i}>{p}</li>
          ))}
        </ul>
      ) : null}
      <div className="jp-GpuEnv-actions">
        <button
          type="button"
          className="jp-GpuEnv-button jp-mod-accept"
          aria-label={`Use in current notebook: ${env.display_name}`}
          title={useTitle}
          disabled={!props.hasNotebook || active || !runnable || busy !== ''}
          onClick={() => void run('use', () => actions.useInCurrentNotebook(env))}
        >
          {busy === 'use' ? 'Switching…' : active ? 'Current kernel' : 'Use in notebook'}
        </button>
        <button
          type="button"
          className="jp-GpuEnv-button"
          aria-label={`New notebook: ${env.display_name}`}
          title={noSpec || `Open a new notebook running in ${env.display_name}`}
          disabled={!runnable || busy !== ''}
          onClick={() => void run('new', () => actions.newNotebook(env))}
        >
          <addIcon.react tag="span" className="jp-GpuEnv-buttonIcon" />
          {busy === 'new' ? 'Opening…' : 'New notebook'}
        </button>
        <button
          type="button"
          className="jp-GpuEnv-button"
          aria-label={`Export environment.yml: ${env.display_name}`}
          aria-expanded={exportOpen}
          aria-controls={exportId}
          title="Download this environment as an environment.yml"
          disabled={busy === 'export'}
          onClick={() => setExportOpen(!exportOpen)}
        >
          <downloadIcon.react tag="span" className="jp-GpuEnv-buttonIcon" />
          {busy === 'export' ? 'Exporting…' : 'Export'}
          {exportOpen ? (
            <caretDownIcon.react tag="span" className="jp-GpuEnv-caret" />
          ) : (
            <caretRightIcon.react tag="span" className="jp-GpuEnv-caret" />
          )}
        </button>
      </div>
      {exportOpen ? (
        <div
          id={exportId}
          className="jp-GpuEnv-exportChoices"
          role="group"
          aria-label={`environment.yml flavour for ${env.display_name}`}
          onKeyDown={e => {
            if (e.key === 'Escape') {
              setExportOpen(false);
            }
          }}
        >
          <span className="jp-GpuEnv-exportLabel">environment.yml:</span>
          {EXPORT_CHOICES.map((choice, i) => (
            <button
              key={choice.mode}
              ref={i === 0 ? firstChoice : undefined}
              type="button"
              className="jp-GpuEnv-chip"
              data-export-mode={choice.mode}
              title={choice.hint}
              aria-label={`Download ${choice.label.toLowerCase()} environment.yml of ${env.display_name}`}
              onClick={() => {
                setExportOpen(false);
                void run('export', () => actions.exportEnvironment(env, choice.mode));
              }}
            >
              {choice.label}
            </button>
          ))}
        </div>
      ) : null}
    </li>
  );
}

interface GpuSectionProps {
  snapshot: GpuSnapshot | null;
  store: GpuEnvStore;
  sessions: SessionRef[];
}

function GpuSection(props: GpuSectionProps): JSX.Element {
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
          <GpuCard key={view.key} view={view} />
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

function GpuCard({ view }: { view: GpuView }): JSX.Element {
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
      {view.details ? <div className="jp-GpuEnv-gpuDetails">{view.details}</div> : null}
      {view.processes.length ? (
        <ul className="jp-GpuEnv-procs" aria-label={`Processes on ${view.title}`}>
          {view.processes.map(proc => (
            <li
              key={proc.key}
              className={proc.isKernel ? 'jp-GpuEnv-proc jp-mod-kernel' : 'jp-GpuEnv-proc'}
              title={proc.path || proc.label}
            >
              <div className="jp-GpuEnv-procMain">
                <span className="jp-GpuEnv-procName">{proc.label}</span>
                <span className="jp-GpuEnv-procMem">{proc.memory}</span>
              </div>
              {proc.environment ? (
                <div className="jp-GpuEnv-procEnv">{proc.environment}</div>
              ) : null}
            </li>
          ))}
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

function Loading({ text }: { text: string }): JSX.Element {
  return (
    <div className="jp-GpuEnv-loading" role="status" aria-live="polite">
      <span className="jp-GpuEnv-spinner" aria-hidden="true" />
      {text}
    </div>
  );
}

function ErrorBox(props: {
  error: { status: number; message: string };
  retry?: string;
  compact?: boolean;
}): JSX.Element {
  const view = describeError(props.error);
  return (
    <div
      className={`jp-GpuEnv-error${props.compact ? ' jp-mod-compact' : ''}`}
      role="alert"
      data-status={props.error.status}
    >
      <strong>{view.title}</strong>
      <span>
        {view.detail}
        {props.compact && props.retry ? ' Showing the last figures.' : ''}
        {props.retry ? ` ${props.retry.charAt(0).toUpperCase()}${props.retry.slice(1)}.` : ''}
      </span>
    </div>
  );
}
