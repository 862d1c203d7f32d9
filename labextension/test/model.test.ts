/** Environment cards, formatting, errors and poll health, on REST-shaped payloads. */
import { describe, expect, it } from 'vitest';

import {
  compatibilityBadge,
  describeError,
  environmentForKernel,
  formatBytes,
  formatPercent,
  formatRetry,
  INITIAL_POLL_HEALTH,
  locationText,
  nextPollHealth,
  notebookName,
  versionFacts
} from '../src/model';
import { cpuImage, env, GIB, vision } from './payloads';

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
