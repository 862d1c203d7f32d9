/**
 * Opens a notebook whose kernel is unknown on this server in the environment
 * it was saved with (`metadata.gpuenv`), instead of Lab's kernel dialog.
 *
 * Lab reads the notebook's kernel preference once its content is loaded, then
 * starts that kernel or asks for one. When the content names a kernel this
 * server lacks but carries a record, the start is held back (`shouldStart:
 * false`, kept by Lab when it fills in the name), the server resolves the
 * record, and the matching kernel starts: right away for an exact match (the
 * same image or packages), after asking for a weaker one. Nothing matching, or
 * a refusal, falls back to Lab's own kernel dialog; the notice that nothing
 * matches offers "Restore environment" (rebuilt from the record's spec).
 */
import { Dialog, ISessionContextDialogs, Notification, showDialog } from '@jupyterlab/apputils';
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { KernelSpec } from '@jupyterlab/services';

import { ApiError, GpuEnvClient } from './api';
import { readRecord, RECORD_KEY, Resolution, weakMatchQuestion } from './record';

export interface RecordOpenerOptions {
  client: GpuEnvClient;
  specs: () => KernelSpec.ISpecModels | null;
  dialogs: ISessionContextDialogs | null;
  /** Rebuild the recorded environment of the notebook at a path, then switch to it. */
  restore?: (path: string) => Promise<void>;
}

/** Call for every notebook widget as soon as it is created (before it loads). */
export function openInRecordedEnvironment(
  panel: NotebookPanel,
  options: RecordOpenerOptions
): void {
  void panel.context.ready.then(() => {
    const model = panel.model;
    if (!model || panel.isDisposed) {
      return;
    }
    const record = readRecord(model.getMetadata(RECORD_KEY));
    const wanted = model.defaultKernelName;
    const specs = options.specs();
    if (!record || (wanted && specs && wanted in specs.kernelspecs)) {
      return; // Lab's usual start
    }
    const context = panel.sessionContext;
    const preference = context.kernelPreference;
    if (preference.shouldStart === false || preference.canStart === false) {
      return;
    }
    context.kernelPreference = { ...preference, shouldStart: false };
    void startRecorded(panel, options).finally(() => {
      context.kernelPreference = { ...context.kernelPreference, shouldStart: true };
    });
  });
}

async function startRecorded(panel: NotebookPanel, options: RecordOpenerOptions): Promise<void> {
  const context = panel.sessionContext;
  // Joins Lab's own initialization: connects to a session already open on the path.
  await context.initialize();
  if (panel.isDisposed || context.session?.kernel) {
    return;
  }
  let resolution: Resolution;
  try {
    resolution = await options.client.resolveNotebook(panel.context.path);
  } catch (error) {
    const detail = error instanceof ApiError ? error.message : String(error);
    const restore = options.restore;
    const path = panel.context.path;
    Notification.warning(`No environment here matches this notebook: ${detail}`, {
      autoClose: restore ? false : 10000,
      actions: restore
        ? [
            {
              label: 'Restore environment',
              caption: 'Create the recorded environment from the spec the notebook carries',
              callback: () => void restore(path)
            }
          ]
        : []
    });
    return chooseKernel(panel, options);
  }
  if (!resolution.exact) {
    const answer = await showDialog({
      title: 'Open in a similar environment?',
      body: weakMatchQuestion(resolution),
      buttons: [
        Dialog.cancelButton({ label: 'Choose another kernel' }),
        Dialog.okButton({ label: `Use ${resolution.display_name}` })
      ]
    });
    if (!answer.button.accept) {
      return chooseKernel(panel, options);
    }
  }
  if (!panel.isDisposed && !context.session?.kernel) {
    await context.changeKernel({ name: resolution.kernel_name });
  }
}

async function chooseKernel(panel: NotebookPanel, options: RecordOpenerOptions): Promise<void> {
  const context = panel.sessionContext;
  context.kernelPreference = { ...context.kernelPreference, shouldStart: true };
  if (options.dialogs && !panel.isDisposed) {
    await options.dialogs.selectKernel(context);
  }
}
