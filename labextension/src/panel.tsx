/**
 * The "GPU Environments" sidebar: environments with their versions and
 * actions, and live GPU status. Rendering only; data comes from the store,
 * the current notebook from the watcher, and every rule of what to show
 * from model.ts.
 */
import { ReactWidget, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import type { ActiveKernelWatcher } from './activekernel';
import type { KernelStatus, ScanProgress } from './api';
import { EnvironmentRow, RowActions } from './envcard';
import { ErrorBox, Loading } from './feedback';
import type { SessionRef } from './gpumodel';
import { ClusterSection } from './clustersection';
import { CreateActions, CreateEnvironmentSection } from './createform';
import { GpuSection } from './gpusection';
import { gpuIcon } from './icons';
import type { KernelHealth } from './kernelhealth';
import { environmentForKernel } from './model';
import { NotebookRecord, recordMismatch } from './record';
import { SettingsBanner } from './settingsbanner';
import type { GpuEnvStore } from './store';

/** What the panel can ask Lab to do; index.ts supplies them. */
export interface PanelActions extends RowActions, CreateActions {
  /** Re-scan environments on the server, then refresh Lab's kernelspecs. */
  refresh(): Promise<void>;
  /** Running sessions, to name the notebooks of GPU processes. */
  sessions(): SessionRef[];
  /** Download the environment.yml of the environment a notebook was saved with. */
  exportRecorded(path: string): Promise<void>;
  /** Rebuild the environment a notebook was saved with (missing here), then switch to it. */
  restoreRecorded(path: string): Promise<void>;
}

export const PANEL_ID = 'gpuenv-panel';

export class GpuEnvPanel extends ReactWidget {
  constructor(
    private readonly _store: GpuEnvStore,
    private readonly _watcher: ActiveKernelWatcher,
    private readonly _actions: PanelActions,
    private readonly _health?: KernelHealth
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
    _health?.changed.connect(this._onChange, this);
  }

  dispose(): void {
    this._health?.changed.disconnect(this._onChange, this);
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
        record={this._watcher.record}
        hasNotebook={this._watcher.notebook !== null}
        actions={this._actions}
        sessions={this._actions.sessions()}
        kernels={this._health?.kernels}
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
  record: NotebookRecord | null;
  hasNotebook: boolean;
  actions: PanelActions;
  sessions: SessionRef[];
  kernels?: ReadonlyMap<string, KernelStatus>;
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
      <SettingsBanner client={store.client} />
      <RecordSection {...props} />
      <EnvironmentsSection {...props} />
      <CreateEnvironmentSection actions={props.actions} />
      <GpuSection
        snapshot={store.gpus}
        store={store}
        sessions={props.sessions}
        kernels={props.kernels}
      />
      <ClusterSection kernels={props.kernels} />
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
  } else if (envs.length === 0 && store.scan) {
    content = <></>;
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
      {store.scan ? <ScanLine scan={store.scan} /> : null}
      {content}
    </section>
  );
}

/** The server's first scan: "Probing 3 of 12 environments…" over a bar. */
function ScanLine({ scan }: { scan: ScanProgress }): JSX.Element {
  const text = scan.message.charAt(0).toUpperCase() + scan.message.slice(1);
  return (
    <div className="jp-GpuEnv-scan" role="status" aria-live="polite">
      <span className="jp-GpuEnv-spinner" aria-hidden="true" />
      <span className="jp-GpuEnv-scanText">{text}…</span>
      {scan.total ? (
        <progress
          className="jp-GpuEnv-scanBar"
          max={scan.total}
          value={scan.probed}
          aria-label="Environments probed"
        />
      ) : null}
    </div>
  );
}

/** The environment the current notebook was saved with, and how it differs from now. */
function RecordSection(props: PanelViewProps): JSX.Element | null {
  const { record } = props;
  if (!record) {
    return null;
  }
  const running = environmentForKernel(props.store.environments, props.activeKernelName);
  const mismatch = recordMismatch(record, running);
  const envs = props.store.environments;
  const missing = envs !== null && !envs.some(env => env.id === record.environment_id);
  return (
    <section className="jp-GpuEnv-record" aria-label="Recorded environment">
      <p className="jp-GpuEnv-recordText">
        Saved with <strong>{record.display_name}</strong>
      </p>
      {mismatch ? (
        <p className="jp-GpuEnv-mismatch" role="status">
          ⚠ {mismatch}
        </p>
      ) : null}
      <button
        type="button"
        className="jp-GpuEnv-button"
        title="Download the environment.yml of the environment this notebook was saved with"
        onClick={() => void props.actions.exportRecorded(props.activePath)}
      >
        Export recorded environment.yml
      </button>
      {missing ? (
        <button
          type="button"
          className="jp-GpuEnv-button"
          title="Create the environment this notebook was saved with from its recorded spec"
          onClick={() => void props.actions.restoreRecorded(props.activePath)}
        >
          Restore environment
        </button>
      ) : null}
    </section>
  );
}
