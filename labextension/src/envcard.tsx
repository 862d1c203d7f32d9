/** One environment card: versions, problems, doctor badge and the three actions. */
import {
  addIcon,
  caretDownIcon,
  caretRightIcon,
  downloadIcon
} from '@jupyterlab/ui-components';
import * as React from 'react';

import type { Environment, ExportMode } from './api';
import {
  compatibilityBadge,
  EXPORT_CHOICES,
  locationText,
  notebookName,
  versionFacts
} from './model';

/** What a card can ask Lab to do (a subset of the panel's actions). */
export interface RowActions {
  useInCurrentNotebook(env: Environment): Promise<void>;
  newNotebook(env: Environment): Promise<void>;
  exportEnvironment(env: Environment, mode: ExportMode): Promise<void>;
  /** Ask, then remove (conda environments only; the server refuses what the user does not own). */
  removeEnvironment(env: Environment): Promise<void>;
  /** False when Lab knows the kernelspecs and this one is not among them. */
  hasKernelspec(kernelName: string): boolean;
}

export interface RowProps {
  env: Environment;
  active: boolean;
  activePath: string;
  hasNotebook: boolean;
  actions: RowActions;
}

export function EnvironmentRow(props: RowProps): JSX.Element {
  const { env, active, actions } = props;
  const [busy, setBusy] = React.useState<'' | 'use' | 'new' | 'export' | 'remove'>('');
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

  const run = async (what: 'use' | 'new' | 'export' | 'remove', action: () => Promise<void>) => {
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
        {env.kind === 'conda' ? (
          <button
            type="button"
            className="jp-GpuEnv-button jp-mod-warn"
            aria-label={`Remove: ${env.display_name}`}
            title="Remove this conda environment (asks first; only environments you own)"
            disabled={active || busy !== ''}
            onClick={() => void run('remove', () => actions.removeEnvironment(env))}
          >
            {busy === 'remove' ? 'Removing…' : 'Remove'}
          </button>
        ) : null}
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
