/**
 * Kernel starts that take a while, shown as they happen. The server records each
 * start's steps (a kernel-layer build: reading the image's Python, downloading wheels,
 * building; a wait on something) in `GET /gpuenv/api/progress`; this polls it and keeps
 * one Lab notification per start up to date, ending as "ready" or with the reason it
 * failed. The request that starts a kernel answers only once it is ready, so the page
 * cannot know the kernel's id before: every start the server reports is shown.
 */
import { Notification } from '@jupyterlab/apputils';
import { Poll } from '@lumino/polling';

import type { GpuEnvClient, ProgressReport } from './api';
import { shouldShowStart, startNotice } from './startnotice';

/** How often the server is asked: seldom while nothing starts, often while something does. */
export const PROGRESS_IDLE_MS = 2000;
export const PROGRESS_ACTIVE_MS = 1000;
const READY_NOTICE_MS = 5000;

export class StartProgressNotices {
  constructor(private readonly _client: GpuEnvClient) {
    this._poll = new Poll<ProgressReport, Error, 'standby'>({
      name: 'jupyter-gpuenv:progress',
      factory: () => this._tick(),
      frequency: { interval: PROGRESS_IDLE_MS, backoff: true, max: 30_000 },
      standby: 'when-hidden'
    });
  }

  /** Ask now (a notebook began to start a kernel). */
  refresh(): void {
    if (!this._poll.isDisposed) {
      void this._poll.refresh();
    }
  }

  dispose(): void {
    this._poll.dispose();
  }

  private async _tick(): Promise<ProgressReport> {
    const report = await this._client.getProgress();
    let active = false;
    for (const start of report.starts) {
      active = active || start.state === 'starting';
      const key = `${start.kernel_id}@${start.started}`;
      const id = this._shown.get(key);
      if (id === undefined) {
        if (shouldShowStart(start)) {
          const notice = startNotice(start);
          this._shown.set(key, Notification.emit(notice.message, notice.type, { autoClose: false }));
        }
        continue;
      }
      if (this._ended.has(key)) {
        continue;
      }
      const notice = startNotice(start);
      const ended = start.state !== 'starting';
      Notification.update({
        id,
        message: notice.message,
        type: notice.type,
        autoClose: ended && notice.type === 'success' ? READY_NOTICE_MS : false
      });
      if (ended) {
        this._ended.add(key);
      }
    }
    const interval = active ? PROGRESS_ACTIVE_MS : PROGRESS_IDLE_MS;
    if (this._poll.frequency.interval !== interval) {
      this._poll.frequency = { ...this._poll.frequency, interval };
    }
    return report;
  }

  private _poll: Poll<ProgressReport, Error, 'standby'>;
  private _shown = new Map<string, string>();
  private _ended = new Set<string>();
}
