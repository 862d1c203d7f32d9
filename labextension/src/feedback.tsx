/** Loading and error states shared by the panel's sections. */
import * as React from 'react';

import { describeError } from './model';

export function Loading({ text }: { text: string }): JSX.Element {
  return (
    <div className="jp-GpuEnv-loading" role="status" aria-live="polite">
      <span className="jp-GpuEnv-spinner" aria-hidden="true" />
      {text}
    </div>
  );
}

export function ErrorBox(props: {
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
