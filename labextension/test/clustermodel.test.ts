/** Swarm placements of kernels, on payloads shaped like GET /gpuenv/api/kernels. */
import { describe, expect, it } from 'vitest';

import type { KernelStatus } from '../src/api';
import { clusterRows } from '../src/clustermodel';

function kernel(id: string, env: string, placement: KernelStatus['placement']): KernelStatus {
  return {
    id,
    name: `gpuenv-docker-${env}`,
    kind: 'docker',
    environment: { id: `docker-${env}`, name: env, kind: 'docker' },
    container: null,
    placement,
    gpus: [],
    execution_state: 'idle',
    idle_seconds: 3,
    connection: 'connected',
    docker: { reachable: true, reason: null, since: null },
    restart_count: 0,
    last_exit: null,
    reclaim: null
  };
}

describe('cluster rows', () => {
  it('lists placed kernels by node with their GPU ids', () => {
    const rows = clusterRows([
      kernel('k1', 'vision', { service: 's1', node: 'gpu-b', node_addr: '10.0.0.2', gpus: ['GPU-2', 'GPU-3'] }),
      kernel('k2', 'nlp', { service: 's2', node: 'gpu-a', node_addr: '10.0.0.1', gpus: ['GPU-0'] }),
      kernel('k3', 'local', null)
    ]);
    expect(rows.map(r => [r.kernelId, r.node, r.gpus])).toEqual([
      ['k2', 'gpu-a', 'GPU-0'],
      ['k1', 'gpu-b', 'GPU-2, GPU-3']
    ]);
    expect(rows[1].title).toBe('vision: service s1 on gpu-b (10.0.0.2), GPU-2, GPU-3');
  });

  it('is empty outside swarm mode', () => {
    expect(clusterRows([kernel('k3', 'local', undefined)])).toEqual([]);
  });
});
