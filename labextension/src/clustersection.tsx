/** The cluster section: in swarm mode, the node and GPUs of each of this server's kernels. */
import * as React from 'react';

import type { KernelStatus } from './api';
import { clusterRows } from './clustermodel';

export function ClusterSection(props: {
  kernels?: ReadonlyMap<string, KernelStatus>;
}): JSX.Element | null {
  const rows = clusterRows(props.kernels?.values() ?? []);
  if (!rows.length) {
    return null;
  }
  return (
    <section className="jp-GpuEnv-section" aria-labelledby="gpuenv-cluster-heading">
      <h3 id="gpuenv-cluster-heading" className="jp-GpuEnv-sectionTitle">
        Cluster kernels
      </h3>
      <ul className="jp-GpuEnv-procs" aria-label="Kernels on the cluster">
        {rows.map(row => (
          <li key={row.kernelId} className="jp-GpuEnv-proc jp-mod-kernel" title={row.title}>
            <div className="jp-GpuEnv-procMain">
              <span className="jp-GpuEnv-procName">{row.environment}</span>
              <span className="jp-GpuEnv-procMem">{row.node}</span>
            </div>
            <div className="jp-GpuEnv-procEnv">GPU {row.gpus}</div>
          </li>
        ))}
      </ul>
    </section>
  );
}
