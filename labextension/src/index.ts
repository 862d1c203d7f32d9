/**
 * jupyter-gpuenv's JupyterLab plugin: wires the REST client, the shared store,
 * the sidebar panel and the status bar item into Lab. No logic lives here.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  ISessionContextDialogs,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import {
  INotebookTracker,
  INotebookWidgetFactory,
  NotebookPanel,
  NotebookWidgetFactory
} from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';

import { ActiveKernelWatcher } from './activekernel';
import { ApiError, CreateJob, CreateRequest, Environment, ExportMode, GpuEnvClient } from './api';
import { followJob, jobKernelName, jobProgress } from './createjob';
import { gpuIcon } from './icons';
import { KernelHealth } from './kernelhealth';
import { describeError } from './model';
import { GpuEnvPanel, PANEL_ID, PanelActions } from './panel';
import { openInRecordedEnvironment } from './recordopen';
import { StartProgressNotices } from './startprogress';
import { GpuEnvStatus } from './statusbar';
import { GpuEnvStore } from './store';

const COMMAND_OPEN = 'jupyter-gpuenv:open-panel';
const COMMAND_REFRESH = 'jupyter-gpuenv:refresh';

function notifyError(what: string, error: unknown): void {
  const view =
    error instanceof ApiError
      ? describeError(error)
      : { title: what, detail: error instanceof Error ? error.message : String(error) };
  Notification.error(`${what} — ${view.title}: ${view.detail}`, { autoClose: 8000 });
}

/** Save text as a file through the browser's normal download flow. */
function downloadText(filename: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/yaml' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.style.display = 'none';
  document.body.appendChild(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 60000);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-gpuenv:plugin',
  description: 'GPU Environments panel and kernel environment status bar item.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [
    ILabShell,
    ILayoutRestorer,
    IStatusBar,
    ICommandPalette,
    INotebookWidgetFactory,
    ISessionContextDialogs
  ],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    notebookFactory: NotebookWidgetFactory.IFactory | null,
    sessionDialogs: ISessionContextDialogs | null
  ) => {
    const { serviceManager, commands, shell } = app;
    const client = new GpuEnvClient(serviceManager.serverSettings);
    const store = new GpuEnvStore(client);
    const watcher = new ActiveKernelWatcher(tracker);
    const health = new KernelHealth(client, tracker);
    // Slow kernel starts (a kernel-layer build, a wait) show their steps as notifications.
    const startNotices = new StartProgressNotices(client);
    tracker.widgetAdded.connect((_, widget) => {
      widget.sessionContext.kernelChanged.connect(() => startNotices.refresh());
      widget.sessionContext.statusChanged.connect((_, status) => {
        if (status === 'starting' || status === 'restarting' || status === 'autorestarting') {
          startNotices.refresh();
        }
      });
    });

    const refresh = async (): Promise<void> => {
      await store.refresh();
      // New environments bring new kernelspecs; let Lab's launcher see them too.
      await serviceManager.kernelspecs.refreshSpecs();
    };

    const createEnvironment = async (
      request: CreateRequest,
      onUpdate: (job: CreateJob) => void
    ): Promise<void> => {
      const job = await client.createEnvironment(request);
      const ended = await followJob(job, id => client.getCreateJob(id), onUpdate);
      if (ended.state === 'done') {
        await refresh(); // the list and the launcher show the new kernel
      }
    };

    const cancelCreate = async (jobId: string): Promise<void> => {
      await client.cancelCreateJob(jobId);
    };

    // Rebuild a notebook's recorded environment (a create job), then switch its kernel.
    const restoreRecorded = async (path: string): Promise<void> => {
      const switchTo = async (kernelName: string) => {
        const widget = tracker.find(w => w.context.path === path);
        if (widget && !widget.isDisposed) {
          await widget.sessionContext.changeKernel({ name: kernelName });
        }
      };
      const id = Notification.emit(`Restoring the environment of ${path}…`, 'in-progress', {
        autoClose: false
      });
      try {
        const answer = await client.restoreNotebook(path);
        if (answer.state === 'pull') {
          Notification.update({
            id,
            type: 'warning',
            autoClose: false,
            message:
              `${answer.name} is a Docker image that is not here: ` +
              (answer.pull_command ?? `pull ${answer.image ?? 'it'}`)
          });
          return;
        }
        let kernelName = answer.kernel_name ?? null;
        if (answer.state === 'creating' && answer.job) {
          const ended = await followJob(
            answer.job,
            jobId => client.getCreateJob(jobId),
            job => Notification.update({ id, message: `${answer.name}: ${jobProgress(job).label}` })
          );
          if (ended.state !== 'done') {
            throw new Error(ended.error?.message ?? 'the create failed');
          }
          await refresh();
          kernelName = jobKernelName(ended);
        }
        if (kernelName) {
          await switchTo(kernelName);
        }
        Notification.update({
          id,
          type: 'success',
          autoClose: 5000,
          message: `${answer.name} is ready; ${path} runs in it`
        });
      } catch (error) {
        Notification.dismiss(id);
        notifyError(`Could not restore the environment of ${path}`, error);
      }
    };

    const actions: PanelActions = {
      useInCurrentNotebook: async (env: Environment) => {
        try {
          await watcher.useKernel(env.kernel_name);
        } catch (error) {
          notifyError(`Could not switch to ${env.display_name}`, error);
        }
      },
      newNotebook: async (env: Environment) => {
        try {
          await commands.execute('notebook:create-new', { kernelName: env.kernel_name });
        } catch (error) {
          notifyError(`Could not open a notebook in ${env.display_name}`, error);
        }
      },
      exportEnvironment: async (env: Environment, mode: ExportMode) => {
        try {
          const file = await client.exportEnvironment(env.id, mode);
          downloadText(file.filename, file.text);
          Notification.success(`Downloaded ${file.filename}`, { autoClose: 3000 });
        } catch (error) {
          notifyError(`Export of ${env.display_name} failed`, error);
        }
      },
      createEnvironment,
      cancelCreate,
      restoreRecorded,
      removeEnvironment: async (env: Environment) => {
        const answer = await showDialog({
          title: 'Remove environment?',
          body: `Remove ${env.display_name} and everything installed in it? This cannot be undone.`,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
        });
        if (!answer.button.accept) {
          return;
        }
        try {
          await client.removeEnvironment(env.id);
          await refresh();
          Notification.success(`Removed ${env.display_name}`, { autoClose: 3000 });
        } catch (error) {
          notifyError(`Could not remove ${env.display_name}`, error);
        }
      },
      refresh,
      hasKernelspec: (kernelName: string) => {
        const specs = serviceManager.kernelspecs.specs;
        return !specs || kernelName in specs.kernelspecs;
      },
      exportRecorded: async (path: string) => {
        try {
          const resolution = await client.resolveNotebook(path);
          if (!resolution.exact && resolution.environment_id !== resolution.record.environment_id) {
            throw new Error(
              `${resolution.record.display_name} is not on this server ` +
                `(${resolution.display_name} only has ${resolution.rule_text})`
            );
          }
          const file = await client.exportEnvironment(resolution.environment_id, 'full');
          downloadText(file.filename, file.text);
          Notification.success(`Downloaded ${file.filename}`, { autoClose: 3000 });
        } catch (error) {
          notifyError('Export of the recorded environment failed', error);
        }
      },
      sessions: () =>
        Array.from(serviceManager.sessions.running())
          .filter(s => s.kernel)
          .map(s => ({ kernelId: s.kernel!.id, path: s.path }))
    };

    // Notebooks whose kernel is unknown here open in their recorded environment.
    const recordOptions = {
      client,
      restore: restoreRecorded,
      specs: () => serviceManager.kernelspecs.specs,
      dialogs: sessionDialogs
    };
    const openRecorded = (_: unknown, widget: NotebookPanel) =>
      openInRecordedEnvironment(widget, recordOptions);
    if (notebookFactory) {
      notebookFactory.widgetCreated.connect(openRecorded);
    } else {
      tracker.widgetAdded.connect(openRecorded);
    }

    const panel = new GpuEnvPanel(store, watcher, actions, health);
    panel.title.caption = 'GPU Environments';
    shell.add(panel, 'left', { rank: 750, type: 'GPU Environments' });
    restorer?.add(panel, 'jupyter-gpuenv:panel');
    serviceManager.kernelspecs.specsChanged.connect(() => panel.refreshView());
    serviceManager.sessions.runningChanged.connect(() => panel.refreshView());
    // Lab may have fetched kernelspecs before the server's first catalog scan ended:
    // when a new listing names kernels Lab does not know yet, ask for the specs again
    // (once per listing).
    let checkedListing: unknown = null;
    const checkKernelspecs = () => {
      const envs = store.environments;
      const specs = serviceManager.kernelspecs.specs;
      if (!envs || !specs || envs === checkedListing || store.scan) {
        return;
      }
      checkedListing = envs;
      if (envs.some(env => !(env.kernel_name in specs.kernelspecs))) {
        void serviceManager.kernelspecs.refreshSpecs();
      }
    };
    store.changed.connect(checkKernelspecs);
    serviceManager.kernelspecs.specsChanged.connect(checkKernelspecs);
    void store.loadEnvironments();

    commands.addCommand(COMMAND_OPEN, {
      label: 'Show GPU Environments',
      icon: gpuIcon,
      execute: () => shell.activateById(PANEL_ID)
    });
    commands.addCommand(COMMAND_REFRESH, {
      label: 'Refresh GPU Environments',
      execute: () => refresh()
    });
    palette?.addItem({ command: COMMAND_OPEN, category: 'GPU Environments' });
    palette?.addItem({ command: COMMAND_REFRESH, category: 'GPU Environments' });

    if (statusBar) {
      const item = new GpuEnvStatus(
        store,
        watcher,
        () => shell.activateById(PANEL_ID),
        health
      );
      statusBar.registerStatusItem('jupyter-gpuenv:status', {
        item,
        align: 'left',
        rank: 4,
        isActive: () => item.isActiveItem,
        activeStateChanged: item.activeStateChanged
      });
    }

    // A notebook that gains focus may change which row is marked.
    labShell?.currentChanged.connect(() => panel.refreshView());
  }
};

export default plugin;
