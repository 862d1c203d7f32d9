/**
 * What happened to the kernels: why one restarted (its previous process's last
 * exit), whether Docker can be reached, and which kernels hold a GPU while idle
 * and are about to be shut down, and which kernels were started although the
 * doctor judged their environment incompatible with this host. Notifications say
 * it once; the status bar and the GPU section read `kernels`.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Kernel } from '@jupyterlab/services';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import type { GpuEnvClient, KernelStatus, KernelsListing } from './api';
import { restartNotice, startWarningNotice } from './kernelnotice';
import { formatBytes } from './model';

const POLL_MS = 10_000;
const EXPLAIN_TRIES = 60;

export class KernelHealth {
  constructor(
    private readonly _client: GpuEnvClient,
    tracker: INotebookTracker
  ) {
    tracker.widgetAdded.connect((_, panel) => this._watch(panel));
    tracker.forEach(panel => this._watch(panel));
    this._poll = new Poll({
      factory: () => this._refresh(),
      frequency: { interval: POLL_MS, backoff: true, max: 60_000 },
      name: 'jupyter-gpuenv:kernels',
      standby: 'when-hidden'
    });
  }

  /** Emitted when the kernel listing changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The server's kernels by id (empty until the first answer). */
  get kernels(): ReadonlyMap<string, KernelStatus> {
    return this._kernels;
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _watch(panel: NotebookPanel): void {
    const context = panel.sessionContext;
    const onStatus = (_: unknown, status: Kernel.Status) => {
      const kernel = context.session?.kernel;
      if (status === 'autorestarting' && kernel) {
        void this._explain(kernel.id, context.path);
      }
    };
    // A new kernel is looked at at once: its start warning belongs with its first cell.
    const onKernel = () => void this._poll.refresh();
    context.statusChanged.connect(onStatus);
    context.kernelChanged.connect(onKernel);
    panel.disposed.connect(() => {
      context.statusChanged.disconnect(onStatus);
      context.kernelChanged.disconnect(onKernel);
    });
  }

  /** After an automatic restart: ask the server why, until it knows (bounded). */
  private async _explain(kernelId: string, path: string): Promise<void> {
    const before = this._kernels.get(kernelId)?.last_exit?.at ?? null;
    for (let attempt = 0; attempt < EXPLAIN_TRIES; attempt++) {
      let status: KernelStatus;
      try {
        status = await this._client.getKernel(kernelId);
      } catch {
        return; // shut down, or the server is away: nothing to explain
      }
      const exit = status.last_exit;
      if (exit && exit.at !== before && exit.at !== this._explained.get(kernelId)) {
        this._explained.set(kernelId, exit.at);
        this._kernels.set(kernelId, status);
        this._changed.emit();
        const notice = restartNotice(status, path);
        if (notice) {
          Notification.error(notice, { autoClose: false });
        }
        return;
      }
      await new Promise(resolve => setTimeout(resolve, 1000));
    }
  }

  private async _refresh(): Promise<void> {
    const listing: KernelsListing = await this._client.listKernels();
    this._kernels = new Map(listing.kernels.map(k => [k.id, k]));
    for (const kernel of listing.kernels) {
      const warning = kernel.reclaim;
      if (warning && !this._warned.has(`${kernel.id}:${warning.shutdown_at.slice(0, 16)}`)) {
        this._warned.add(`${kernel.id}:${warning.shutdown_at.slice(0, 16)}`);
        Notification.warning(`Kernel ${kernel.id.slice(0, 8)}: ${warning.message}`, {
          autoClose: false
        });
      }
    }
    for (const kernel of listing.kernels) {
      const notice = startWarningNotice(kernel);
      const details = kernel.start_warning;
      if (notice && details && !this._warned.has(`start:${kernel.id}`)) {
        this._warned.add(`start:${kernel.id}`);
        Notification.warning(notice, {
          autoClose: false,
          actions: [
            {
              label: 'Details',
              caption: "The doctor's finding and its fix",
              callback: () =>
                void showDialog({
                  title: 'Started on an incompatible host',
                  body: details,
                  buttons: [Dialog.okButton()]
                })
            }
          ]
        });
      }
    }
    for (const gone of listing.reclaimed) {
      if (!this._warned.has(`reclaimed:${gone.kernel_id}`)) {
        this._warned.add(`reclaimed:${gone.kernel_id}`);
        Notification.info(
          `Kernel ${gone.kernel_id.slice(0, 8)} freed ${formatBytes(gone.gpu_memory)} of GPU memory: ${gone.message}`,
          { autoClose: false }
        );
      }
    }
    this._changed.emit();
  }

  private _poll: Poll;
  private _kernels = new Map<string, KernelStatus>();
  private _explained = new Map<string, string>();
  private _warned = new Set<string>();
  private _changed = new Signal<this, void>(this);
}
