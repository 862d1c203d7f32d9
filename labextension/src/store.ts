/**
 * The one place the front end keeps gpuenv data: the catalog and the shared
 * GPU status poll. The panel and the status bar read it and listen to
 * `changed`; neither fetches on its own, so two views never double the load.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  ApiError,
  Environment,
  GpuEnvClient,
  GpuHistory,
  GpuSnapshot,
  ScanProgress
} from './api';
import { historyRequestSeconds, mergeHistory } from './gpuhistory';
import { INITIAL_POLL_HEALTH, PollHealth, nextPollHealth } from './model';

/** How often GPU status is fetched while someone looks at it, and the backoff cap. */
export const GPU_POLL_INTERVAL_MS = 5000;
export const GPU_POLL_MAX_INTERVAL_MS = 60000;
/** Seconds of GPU use the cards chart (the server keeps at most its own window). */
export const GPU_HISTORY_SECONDS = 600;
/** How often a partial catalog (the server's first scan still probing) is fetched again. */
export const LISTING_POLL_MS = 1000;

function asApiError(error: unknown): ApiError {
  if (error instanceof ApiError) {
    return error;
  }
  return new ApiError(0, error instanceof Error ? error.message : String(error), '');
}

export class GpuEnvStore {
  constructor(readonly client: GpuEnvClient) {
    this._poll = new Poll<GpuSnapshot, ApiError, 'standby'>({
      name: 'jupyter-gpuenv:gpus',
      factory: () => this._fetchGpus(),
      frequency: {
        interval: GPU_POLL_INTERVAL_MS,
        backoff: true,
        max: GPU_POLL_MAX_INTERVAL_MS
      },
      // Nobody looking (panel hidden, no GPU figure in the status bar): stand by.
      // Someone looking: still stand by while the browser tab is in the background.
      standby: () => (this._consumers.size === 0 ? true : 'when-hidden')
    });
    this._poll.ticked.connect((_, state) => {
      this.gpuHealth = nextPollHealth(this.gpuHealth, {
        phase: state.phase,
        interval: state.interval,
        payload: state.payload,
        at: Date.now()
      });
      if (state.phase === 'rejected' || state.phase === 'resolved') {
        this._changed.emit();
      }
    });
  }

  /** The catalog, null until the first answer. */
  environments: Environment[] | null = null;
  environmentsError: ApiError | null = null;
  loadingEnvironments = false;
  refreshing = false;
  /** The server's first scan while `environments` holds only what it probed so far. */
  scan: ScanProgress | null = null;

  /** The last GPU sample, null until the first answer. */
  gpus: GpuSnapshot | null = null;
  gpuHealth: PollHealth = INITIAL_POLL_HEALTH;

  /** Emitted whenever anything above changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Load the catalog (the server answers from its cache when warm). */
  async loadEnvironments(): Promise<void> {
    if (this.loadingEnvironments) {
      return;
    }
    this.loadingEnvironments = true;
    this._changed.emit();
    try {
      // The server answers at once; while its first scan probes, the listing is partial
      // and comes with the scan's progress: ask again until it is complete.
      while (!this.isDisposed) {
        const listing = await this.client.listEnvironmentsPartial();
        this.environments = listing.environments;
        this.environmentsError = null;
        this.scan = listing.complete ? null : listing.scan;
        if (listing.complete) {
          break;
        }
        this._changed.emit();
        await new Promise(resolve => setTimeout(resolve, LISTING_POLL_MS));
      }
    } catch (error) {
      this.environmentsError = asApiError(error);
      this.scan = null;
    } finally {
      this.loadingEnvironments = false;
      this._changed.emit();
    }
  }

  /** Ask the server to re-scan every source, and fetch GPU status now. */
  async refresh(): Promise<void> {
    if (this.refreshing) {
      return;
    }
    this.refreshing = true;
    this._changed.emit();
    void this._poll.refresh();
    try {
      this.environments = await this.client.refreshEnvironments();
      this.environmentsError = null;
      this.scan = null;
    } catch (error) {
      this.environmentsError = asApiError(error);
    } finally {
      this.refreshing = false;
      this._changed.emit();
    }
  }

  /**
   * Say whether a view currently shows GPU data. The poll runs only while at
   * least one does; the first one to appear gets a fresh sample at once.
   */
  setGpuConsumer(name: string, active: boolean): void {
    const had = this._consumers.size > 0;
    if (active) {
      this._consumers.add(name);
    } else {
      this._consumers.delete(name);
    }
    if (!had && this._consumers.size > 0 && !this._poll.isDisposed) {
      void this._poll.refresh();
    }
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _fetchGpus(): Promise<GpuSnapshot> {
    try {
      // The whole window once, then only what is new since the last answer.
      const asked = Date.now();
      const since = this._historyAskedAt === null ? null : asked - this._historyAskedAt;
      const seconds = historyRequestSeconds(this._history, since, GPU_HISTORY_SECONDS);
      const answer = await this.client.getGpus(seconds);
      if (answer.history) {
        this._history = mergeHistory(this._history, answer.history, GPU_HISTORY_SECONDS);
        this._historyAskedAt = asked;
        answer.history = this._history;
      }
      this.gpus = answer;
      return this.gpus;
    } catch (error) {
      // Rejecting makes the Poll back off; the health fold keeps the message.
      throw asApiError(error);
    }
  }

  private _history: GpuHistory | null = null;
  private _historyAskedAt: number | null = null;
  private _poll: Poll<GpuSnapshot, ApiError, 'standby'>;
  private _consumers = new Set<string>();
  private _changed = new Signal<this, void>(this);
}
