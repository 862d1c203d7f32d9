/** Swarm-mode kernels as the panel lists them: which node and which GPUs each one got. */
import type { KernelStatus } from './api';

export interface ClusterRow {
  kernelId: string;
  environment: string;
  node: string;
  gpus: string;
  title: string;
}

/** One row per kernel that Swarm placed, ordered by node then environment. */
export function clusterRows(kernels: Iterable<KernelStatus>): ClusterRow[] {
  const rows: ClusterRow[] = [];
  for (const kernel of kernels) {
    const placement = kernel.placement;
    if (!placement) {
      continue;
    }
    const environment = kernel.environment?.name || kernel.environment?.id || kernel.name || kernel.id;
    const gpus = placement.gpus.length ? placement.gpus.join(', ') : 'no GPU';
    rows.push({
      kernelId: kernel.id,
      environment,
      node: placement.node || 'unknown node',
      gpus,
      title: `${environment}: service ${placement.service} on ${placement.node} (${placement.node_addr}), ${gpus}`
    });
  }
  return rows.sort(
    (a, b) => a.node.localeCompare(b.node) || a.environment.localeCompare(b.environment)
  );
}
