/**
 * The banner listing invalid `c.GpuEnv` settings (from `GET /gpuenv/api/status`).
 *
 * The server keeps working with the valid settings; this tells the admin which
 * ones were left at their default, with the value written and what was expected.
 * A JupyterHub user (who cannot change the configuration) sees one line only.
 */
import * as React from 'react';

import type { GpuEnvClient, ServerStatus } from './api';
import { settingsBannerText } from './settings';

export function SettingsBanner(props: { client: GpuEnvClient }): JSX.Element | null {
  const [status, setStatus] = React.useState<ServerStatus | null>(null);
  React.useEffect(() => {
    let live = true;
    props.client.getStatus().then(
      value => {
        if (live) {
          setStatus(value);
        }
      },
      () => undefined // an older server without /status: nothing to show
    );
    return () => {
      live = false;
    };
  }, [props.client]);
  const text = settingsBannerText(status);
  if (!status || !text) {
    return null;
  }
  return (
    <section className="jp-GpuEnv-settingsBanner" role="alert" aria-label="Invalid settings">
      <strong>{text.title}</strong>
      <span>{text.detail}</span>
      {status.admin ? (
        <ul className="jp-GpuEnv-settingsProblems">
          {status.problems.map(problem => (
            <li key={problem.setting} title={problem.message}>
              <code>{problem.setting}</code> = <code>{problem.value}</code>
              <span className="jp-GpuEnv-settingsExpected">
                expected {problem.expected}; {problem.consequence}
              </span>
            </li>
          ))}
        </ul>
      ) : null}
    </section>
  );
}
