/** Pure view rules of the panel and status bar, on payloads shaped like the REST API's. */
import { describe, expect, it } from 'vitest';

import type { Environment, GpuSnapshot } from '../src/api';
import {
  compatibilityBadge,
  describeError,
  driverSummary,
  environmentForKernel,
  formatBytes,
  formatPercent,
  formatRetry,
  gpuViews,
  INITIAL_POLL_HEALTH,
  kernelGpuUsage,
  locationText,
  nextPollHealth,
  noGpuMessage,
  notebookName,
  statusBarView,
  versionFacts
} from '../src/model';

const GIB = 1024 ** 3;

function env(overrides: Partial<Environment>): Environment {
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

const vision = env({});
const cpuImage = env({
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

function snapshot(overrides: Partial<GpuSnapshot> = {}): GpuSnapshot {
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

describe('formatting', () => {
  it('formats bytes in binary units and marks unknowns', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(512 * 1024 ** 2)).toBe('512 MiB');
    expect(formatBytes(12.34 * GIB)).toBe('12.3 GiB');
    expect(formatBytes(141 * GIB)).toBe('141 GiB');
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(undefined)).toBe('—');
    expect(formatBytes(-1)).toBe('—');
  });

  it('formats percentages and backoff delays', () => {
    expect(formatPercent(36.6)).toBe('37 %');
    expect(formatPercent(null)).toBe('—');
    expect(formatRetry(15000)).toBe('retrying in 15 s');
    expect(formatRetry(180000)).toBe('retrying in 3 min');
    expect(formatRetry(null)).toBe('');
  });

  it('names notebooks by their last path segment', () => {
    expect(notebookName('work/deep/train.ipynb')).toBe('train.ipynb');
    expect(notebookName('Untitled.ipynb')).toBe('Untitled.ipynb');
    expect(notebookName(null)).toBe('');
  });
});

describe('environment rows', () => {
  it('shows Python, PyTorch, CUDA and cuDNN of a CUDA build', () => {
    expect(versionFacts(vision)).toEqual([
      { label: 'Python', value: '3.11.7', missing: false },
      { label: 'PyTorch', value: '2.9.0+cu121', missing: false },
      { label: 'CUDA', value: '12.1', missing: false },
      { label: 'cuDNN', value: '90100', missing: false }
    ]);
  });

  it('says "CPU build" for torch without CUDA and "not installed" without torch', () => {
    expect(versionFacts(cpuImage).map(f => f.value)).toEqual(['3.11.7', '2.13.0+cpu', 'CPU build']);
    const bare = versionFacts(env({ torch_version: null, cuda_version: null, cudnn_version: null }));
    expect(bare[1]).toEqual({ label: 'PyTorch', value: 'not installed', missing: true });
    expect(bare[2].missing).toBe(true);
  });

  it('describes where an environment lives', () => {
    expect(locationText(vision)).toBe('/opt/conda/envs/vision');
    expect(locationText(env({ location: { image: 'lab/v:1', conda_env: 'torch' } }))).toBe(
      'lab/v:1 · conda env torch'
    );
  });

  it('matches the active kernel to its environment by kernelspec name', () => {
    expect(environmentForKernel([vision, cpuImage], cpuImage.kernel_name)).toBe(cpuImage);
    expect(environmentForKernel([vision, cpuImage], 'python3')).toBeUndefined();
    expect(environmentForKernel(null, vision.kernel_name)).toBeUndefined();
    expect(environmentForKernel([vision], null)).toBeUndefined();
  });
});

describe('compatibility badge', () => {
  it('shows nothing for ok verdicts or no doctor data', () => {
    expect(compatibilityBadge(null)).toBeNull();
    expect(compatibilityBadge({ verdict: 'ok', findings: [{ severity: 'ok', message: 'fine' }] })).toBeNull();
  });

  it('flags errors first and puts fixes in the hover text', () => {
    const badge = compatibilityBadge({
      verdict: 'error',
      findings: [
        { severity: 'warning', message: 'GPU build on a host without GPU', fix: null },
        { severity: 'ok', message: 'cuDNN present' },
        {
          severity: 'error',
          message: 'CUDA 12.1 needs driver >= 525.60.13 (have 470.82.01)',
          fix: 'upgrade the driver to >= 525.60.13'
        }
      ]
    })!;
    expect(badge.severity).toBe('error');
    expect(badge.label).toBe('Incompatible');
    expect(badge.findings.map(f => f.severity)).toEqual(['error', 'warning']);
    expect(badge.title.split('\n')[0]).toBe(
      'CUDA 12.1 needs driver >= 525.60.13 (have 470.82.01) — Fix: upgrade the driver to >= 525.60.13'
    );
  });

  it('trusts a finding worse than the stated verdict', () => {
    const badge = compatibilityBadge({
      verdict: 'ok',
      findings: [{ severity: 'warning', message: 'CPU-only build on a GPU host' }]
    })!;
    expect(badge.severity).toBe('warning');
    expect(badge.label).toBe('Warning');
  });
});

describe('GPU section', () => {
  const sessions = [
    { kernelId: 'k-2', path: 'experiments/cpu-check.ipynb' },
    { kernelId: 'k-1', path: 'elsewhere.ipynb' }
  ];

  it('orders GPUs by index with memory figures and fraction', () => {
    const views = gpuViews(snapshot(), [vision, cpuImage], sessions);
    expect(views.map(v => v.title)).toEqual(['GPU 0', 'GPU 1']);
    expect(views[0].memoryText).toBe('20.0 GiB / 80.0 GiB');
    expect(views[0].memoryFraction).toBeCloseTo(0.25);
    expect(views[0].utilization).toBe(37);
    expect(views[0].details).toBe('compute 8.0 · 123 / 400 W');
    expect(views[0].hiddenProcesses).toBe(1);
    expect(views[1].processes).toEqual([]);
  });

  it('names kernel processes by notebook, biggest first, falling back to sessions', () => {
    const procs = gpuViews(snapshot(), [vision, cpuImage], sessions)[0].processes;
    expect(procs.map(p => p.label)).toEqual(['train.ipynb', 'cpu-check.ipynb', 'PID 4242 · python']);
    expect(procs[0]).toMatchObject({
      path: 'work/train.ipynb',
      environment: 'vision (conda)',
      memory: '12.0 GiB',
      isKernel: true,
      own: true
    });
    expect(procs[1].environment).toBe('torch-cpu (docker)');
    expect(procs[2]).toMatchObject({ isKernel: false, environment: '' });
  });

  it('keeps unknown metrics unknown instead of inventing zeros', () => {
    const snap = snapshot({
      gpus: [{ index: 0, memory_total: null, memory_used: null, processes: [{ pid: 7, used_memory: null, kernel_id: 'abcdef123456' }] }]
    });
    const [view] = gpuViews(snap, [], []);
    expect(view.memoryFraction).toBeNull();
    expect(view.memoryText).toBe('— / —');
    expect(view.name).toBe('Unknown GPU');
    expect(view.processes[0].label).toBe('Kernel abcdef12');
  });

  it('has no cards without GPUs and explains why', () => {
    const none = snapshot({ available: false, state: 'unavailable', gpus: [], reason: 'No NVIDIA driver is installed on this machine' });
    expect(gpuViews(none, [], [])).toEqual([]);
    expect(noGpuMessage(none)).toEqual({ title: 'No GPU visible', reason: 'No NVIDIA driver is installed on this machine' });
    expect(noGpuMessage(snapshot({ available: false, state: 'sampling', gpus: [], reason: 'sampling' })).title).toBe(
      'Reading GPU status…'
    );
    expect(noGpuMessage(snapshot({ gpus: [] })).title).toBe('No GPU visible');
  });

  it('summarises the driver', () => {
    expect(driverSummary(snapshot())).toBe('Driver 550.54.15 · CUDA 12.4');
    expect(driverSummary(snapshot({ driver_version: null, cuda_driver_version: null }))).toBe('');
    expect(driverSummary(null)).toBe('');
  });
});

describe('status bar', () => {
  it('sums a kernel’s GPU memory over every GPU it uses', () => {
    const snap = snapshot();
    snap.gpus[0].processes.push({ pid: 103, used_memory: 1 * GIB, kernel_id: 'k-1' });
    snap.gpus[1].processes.push({ pid: 104, used_memory: 3 * GIB, kernel_id: 'k-1' });
    expect(kernelGpuUsage(snap, 'k-1')).toEqual({ bytes: 16 * GIB, gpus: [0, 1] });
    expect(kernelGpuUsage(snap, 'k-9')).toBeNull();
    expect(kernelGpuUsage(snapshot({ available: false, gpus: [] }), 'k-1')).toBeNull();
  });

  it('names the environment and its GPU memory, or nothing for other kernels', () => {
    const active = { kernelName: vision.kernel_name, kernelId: 'k-1', path: 'work/train.ipynb' };
    expect(statusBarView(active, [vision], snapshot())!.text).toBe('vision · 12.0 GiB on GPU 0');
    expect(statusBarView({ ...active, kernelId: 'k-7' }, [vision], snapshot())!.text).toBe(
      'vision · no GPU memory'
    );
    const noGpu = snapshot({ available: false, state: 'unavailable', gpus: [], reason: 'no driver' });
    expect(statusBarView(active, [vision], noGpu)!.text).toBe('vision · no GPU');
    expect(statusBarView(active, [vision], null)!.text).toBe('vision');
    expect(statusBarView(active, [vision], snapshot())!.title).toContain(vision.display_name);
    expect(statusBarView({ ...active, kernelName: 'python3' }, [vision], snapshot())).toBeNull();
    expect(statusBarView(null, [vision], snapshot())).toBeNull();
  });
});

describe('errors and poll health', () => {
  it('explains unreachable, forbidden, Docker down and unknown failures', () => {
    expect(describeError({ status: 0, message: 'x' }).title).toBe('Cannot reach the Jupyter server');
    expect(describeError({ status: 403, message: 'Forbidden' }).detail).toContain('403: Forbidden');
    const docker = describeError({ status: 503, message: 'Docker is not running: connection refused' });
    expect(docker).toEqual({ title: 'Docker is not available', detail: 'Docker is not running: connection refused' });
    expect(describeError({ status: 500, message: '' }).title).toBe('Server error (500)');
  });

  it('counts consecutive failures with the backoff delay and resets on success', () => {
    let health = INITIAL_POLL_HEALTH;
    health = nextPollHealth(health, { phase: 'rejected', interval: 5000, payload: { status: 0, message: 'down' }, at: 1 });
    health = nextPollHealth(health, { phase: 'rejected', interval: 14000, payload: { status: 503, message: 'busy' }, at: 2 });
    expect(health).toEqual({ failures: 2, lastError: { status: 503, message: 'busy' }, retryInMs: 14000, lastSuccessAt: null });
    expect(nextPollHealth(health, { phase: 'standby', interval: 5000, at: 3 })).toBe(health);
    expect(nextPollHealth(health, { phase: 'resolved', interval: 5000, at: 4 })).toEqual({
      failures: 0,
      lastError: null,
      retryInMs: null,
      lastSuccessAt: 4
    });
  });
});
