/**
 * Status bar item: the current notebook's environment and the GPU memory its
 * kernel holds. Shown only for kernels of gpuenv environments; a click opens
 * the panel.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import * as React from 'react';

import type { ActiveKernelWatcher } from './activekernel';
import { gpuIcon } from './icons';
import type { KernelHealth } from './kernelhealth';
import { kernelWarning } from './kernelnotice';
import { statusBarView } from './gpumodel';
import { environmentForKernel } from './model';
import { recordMismatch } from './record';
import type { GpuEnvStore } from './store';

export class GpuEnvStatus extends ReactWidget {
  constructor(
    private readonly _store: GpuEnvStore,
    private readonly _watcher: ActiveKernelWatcher,
    private readonly _openPanel: () => void,
    private readonly _health?: KernelHealth
  ) {
    super();
    this.addClass('jp-GpuEnv-status');
    _store.changed.connect(this._onChange, this);
    _watcher.changed.connect(this._onChange, this);
    _health?.changed.connect(this._onChange, this);
    this._onChange();
  }

  /** Emitted when the item appears or disappears (the status bar listens). */
  get activeStateChanged(): ISignal<this, void> {
    return this._activeStateChanged;
  }

  /** Whether the current notebook runs in a gpuenv environment. */
  get isActiveItem(): boolean {
    return this._view() !== null;
  }

  dispose(): void {
    this._store.setGpuConsumer('statusbar', false);
    this._store.changed.disconnect(this._onChange, this);
    this._watcher.changed.disconnect(this._onChange, this);
    this._health?.changed.disconnect(this._onChange, this);
    Signal.clearData(this);
    super.dispose();
  }

  protected render(): JSX.Element | null {
    const view = this._view();
    if (!view) {
      return null;
    }
    const mismatch = this._mismatch();
    return (
      <button
        type="button"
        className={`jp-GpuEnv-statusButton${view.warning ? ' jp-mod-warning' : ''}`}
        title={mismatch ? `${view.title}\nThis notebook was ${mismatch}` : view.title}
        aria-label={`Kernel environment ${view.text}. Open the GPU Environments panel`}
        onClick={this._openPanel}
      >
        <gpuIcon.react tag="span" className="jp-GpuEnv-statusIcon" />
        <span className="jp-GpuEnv-statusText">{view.text}</span>
        {mismatch ? (
          <span className="jp-GpuEnv-statusMismatch" role="status">
            ⚠ {mismatch}
          </span>
        ) : null}
        {view.warning ? (
          <span className="jp-GpuEnv-statusWarning">⚠ {view.warning}</span>
        ) : null}
      </button>
    );
  }

  private _view(): { text: string; title: string; warning: string | null } | null {
    const view = statusBarView(this._watcher.current, this._store.environments, this._store.gpus);
    if (!view) {
      return null;
    }
    const kernelId = this._watcher.current?.kernelId;
    const status = kernelId ? this._health?.kernels.get(kernelId) : undefined;
    const warning = kernelWarning(status);
    const detail =
      status?.reclaim?.message ?? status?.docker.reason ?? status?.start_warning ?? '';
    return {
      ...view,
      warning,
      title: warning && detail ? `${view.title}\n${detail}` : view.title
    };
  }

  private _mismatch(): string | null {
    const env = environmentForKernel(
      this._store.environments,
      this._watcher.current?.kernelName
    );
    return recordMismatch(this._watcher.record, env);
  }

  private _onChange(): void {
    const env = environmentForKernel(
      this._store.environments,
      this._watcher.current?.kernelName
    );
    const gpus = this._store.gpus;
    // GPU figures are only worth polling for while a gpuenv kernel is current
    // and the host has GPUs at all.
    this._store.setGpuConsumer('statusbar', Boolean(env) && (!gpus || gpus.available));
    const active = this.isActiveItem;
    if (active !== this._wasActive) {
      this._wasActive = active;
      this._activeStateChanged.emit();
    }
    this.update();
  }

  private _wasActive = false;
  private _activeStateChanged = new Signal<this, void>(this);
}
