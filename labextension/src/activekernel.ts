/**
 * Follows the current notebook and its kernel, so the panel can mark the row
 * of the environment in use and the status bar can name it. Switching the
 * kernel goes through the notebook's session context, as Lab's own kernel
 * picker does.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import type { ActiveKernel } from './gpumodel';
import { NotebookRecord, readRecord, RECORD_KEY } from './record';

export class ActiveKernelWatcher {
  constructor(private readonly _tracker: INotebookTracker) {
    _tracker.currentChanged.connect(this._onCurrentChanged, this);
    this._onCurrentChanged();
  }

  /** Emitted when the current notebook or its kernel changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The current notebook (the last one focused), if any. */
  get notebook(): NotebookPanel | null {
    return this._tracker.currentWidget;
  }

  /** Kernel name, id and path of the current notebook; null without a notebook. */
  get current(): ActiveKernel | null {
    const panel = this._tracker.currentWidget;
    if (!panel) {
      return null;
    }
    const context = panel.sessionContext;
    const kernel = context.session?.kernel;
    return {
      kernelName: kernel?.name ?? context.kernelPreference.name ?? null,
      kernelId: kernel?.id ?? null,
      path: context.path
    };
  }

  /** The environment record (`metadata.gpuenv`) of the current notebook, if any. */
  get record(): NotebookRecord | null {
    const model = this._tracker.currentWidget?.model;
    return model ? readRecord(model.getMetadata(RECORD_KEY)) : null;
  }

  /** Give the current notebook the kernel `kernelName` (a new kernel of that spec). */
  async useKernel(kernelName: string): Promise<void> {
    const panel = this._tracker.currentWidget;
    if (!panel) {
      throw new Error('Open a notebook first.');
    }
    await panel.sessionContext.ready;
    await panel.sessionContext.changeKernel({ name: kernelName });
  }

  dispose(): void {
    this._connect(null);
    this._watchModel(null);
    this._tracker.currentChanged.disconnect(this._onCurrentChanged, this);
    Signal.clearData(this);
  }

  private _onCurrentChanged(): void {
    const panel = this._tracker.currentWidget;
    this._connect(panel?.sessionContext ?? null);
    this._watchModel(panel);
    this._changed.emit();
  }

  /** The record can appear after the notebook opened (loaded, or set by a save). */
  private _watchModel(panel: NotebookPanel | null): void {
    this._panel?.model?.metadataChanged.disconnect(this._emit, this);
    this._panel = panel;
    if (panel) {
      void panel.context.ready.then(() => {
        if (this._panel === panel && panel.model) {
          panel.model.metadataChanged.connect(this._emit, this);
          this._emit();
        }
      });
    }
  }

  private _connect(context: ISessionContext | null): void {
    if (this._context) {
      this._context.kernelChanged.disconnect(this._emit, this);
      this._context.sessionChanged.disconnect(this._emit, this);
      this._context.propertyChanged.disconnect(this._emit, this);
    }
    this._context = context;
    if (context) {
      context.kernelChanged.connect(this._emit, this);
      context.sessionChanged.connect(this._emit, this);
      context.propertyChanged.connect(this._emit, this);
    }
  }

  private _emit(): void {
    this._changed.emit();
  }

  private _context: ISessionContext | null = null;
  private _panel: NotebookPanel | null = null;
  private _changed = new Signal<this, void>(this);
}
