/** REST payloads shaped like the server's, shared by the model tests. */
import type { Environment, GpuSnapshot } from '../src/api';

export const GIB = 1024 ** 3;

export function env(overrides: Partial<Environment>): Environment {
  return {
    id: 'conda-vision-1a2b3c4d',
    name: 'vision',
    kind: 'conda',
    display_name: 'vision (conda) · PyTorch 2.9 · CUDA 12.1',
    kernel_name: 'gpuenv-conda-vision-1a2b3c4d',
    location: { prefix: '/opt/conda/envs/vision' },
    python_version: '3.11.7',
    torch_version: '2.9.0+cu121',
    cuda_version: '12.1',
    cudnn_version: '90100',
    ipykernel: true,
    labels: {},
    problems: [],
    compatibility: null,
    ...overrides
  };
}

export const vision = env({});
export const cpuImage = env({
  id: 'docker-torch-cpu-99887766',
  name: 'torch-cpu',
  kind: 'docker',
  display_name: 'PyTorch 2.13 · CPU (docker)',
  kernel_name: 'gpuenv-docker-torch-cpu-99887766',
  location: { image: 'gpuenv-test/torch-cpu:abc', image_id: 'sha256:1', conda_env: null },
  torch_version: '2.13.0+cpu',
  cuda_version: null,
  cudnn_version: null
});

export function snapshot(overrides: Partial<GpuSnapshot> = {}): GpuSnapshot {
  return {
    available: true,
    reason: null,
    state: 'ok',
    driver_version: '550.54.15',
    cuda_driver_version: '12.4',
    gpu_count: 2,
    sampled_at: 1700000000,
    gpus: [
      {
        index: 1,
        uuid: 'GPU-bbbb',
        name: 'NVIDIA L4',
        memory_total: 24 * GIB,
        memory_used: 0,
        utilization_gpu: 0,
        temperature: 35,
        processes: []
      },
      {
        index: 0,
        uuid: 'GPU-aaaa',
        name: 'NVIDIA A100-SXM4-80GB',
        memory_total: 80 * GIB,
        memory_used: 20 * GIB,
        utilization_gpu: 37,
        temperature: 45,
        power_draw: 123.4,
        power_limit: 400,
        compute_capability: '8.0',
        processes: [
          { pid: 4242, used_memory: 2 * GIB, name: 'python' },
          {
            pid: 101,
            used_memory: 12 * GIB,
            kernel_id: 'k-1',
            environment_id: vision.id,
            notebook_path: 'work/train.ipynb',
            own: true
          },
          { pid: 102, used_memory: 6 * GIB, kernel_id: 'k-2', environment_id: cpuImage.id }
        ],
        hidden_processes: 1
      }
    ],
    ...overrides
  };
}
