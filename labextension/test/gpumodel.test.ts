/** GPU cards and the status bar text, on payloads shaped like GET /gpuenv/api/gpus. */
import { describe, expect, it } from 'vitest';

import { driverSummary, gpuViews, kernelGpuUsage, noGpuMessage, statusBarView } from '../src/gpumodel';
import { cpuImage, GIB, snapshot, vision } from './payloads';

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
