/**
 * What the invalid-settings banner says, from `GET /gpuenv/api/status`.
 *
 * Pure functions only, unit-tested on plain data like model.ts.
 */
import type { ErrorView } from './model';

/** Headline and advice of the invalid-settings banner; null when there is none. */
export function settingsBannerText(
  status: { admin: boolean; problems: readonly unknown[] } | null | undefined
): ErrorView | null {
  const count = status?.problems?.length ?? 0;
  if (!status || count === 0) {
    return null;
  }
  const title = `${count} invalid setting${count === 1 ? '' : 's'} in the server's configuration`;
  if (!status.admin) {
    return {
      title,
      detail:
        'Environments with valid settings work as usual. Your administrator can see the details with `jupyter gpuenv doctor`.'
    };
  }
  return {
    title,
    detail:
      'Each was left at its default (an invalid docker_images entry has no kernel); everything else works. Fix them in jupyter_server_config.py and restart the server.'
  };
}
