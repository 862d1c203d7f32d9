/** The recorded environment of a notebook against the kernel running it. */
import { describe, expect, it } from 'vitest';

import {
  majorMinor,
  readRecord,
  recordMismatch,
  versionsText,
  weakMatchQuestion
} from '../src/record';
import { cpuImage, vision } from './payloads';

const RECORD = {
  environment_id: 'conda-vision-1234abcd',
  name: 'vision',
  kind: 'conda',
  display_name: 'vision (conda) · PyTorch 2.9 · CUDA 12.1',
  torch_version: '2.9.0+cu121',
  cuda_version: '12.1',
  python_version: '3.11.9'
};

describe('notebook records', () => {
  it('reads only records with an id, a name and a kind', () => {
    expect(readRecord(undefined)).toBeNull();
    expect(readRecord(['x'])).toBeNull();
    expect(readRecord({ name: 'vision', kind: 'conda' })).toBeNull();
    const record = readRecord({ ...RECORD, gpus: ['A100', 3], torch_version: 7 });
    expect(record?.gpus).toEqual(['A100']);
    expect(record?.torch_version).toBeNull();
  });

  it('shortens versions to major.minor', () => {
    expect(majorMinor('2.9.0+cu121')).toBe('2.9');
    expect(majorMinor('12.1')).toBe('12.1');
    expect(majorMinor(null)).toBeNull();
    expect(versionsText('2.13.0+cpu', null, '3.11')).toBe('PyTorch 2.13 · CPU');
    expect(versionsText(null, null, '3.11.2')).toBe('Python 3.11');
  });

  it('says when the running environment differs from the recorded one', () => {
    const record = readRecord(RECORD);
    expect(recordMismatch(record, cpuImage)).toBe(
      `recorded with PyTorch 2.9 · CUDA 12.1, running ${versionsText(
        cpuImage.torch_version,
        cpuImage.cuda_version,
        cpuImage.python_version
      )}`
    );
    expect(recordMismatch(record, { ...vision, torch_version: '2.9.1', cuda_version: '12.1' })).toBeNull();
    expect(recordMismatch(null, vision)).toBeNull();
  });

  it('asks before a weaker match', () => {
    const question = weakMatchQuestion({
      path: 'a.ipynb',
      record: readRecord(RECORD)!,
      environment_id: vision.id,
      kernel_name: vision.kernel_name,
      display_name: 'other (conda)',
      rule: 'torch_and_cuda',
      rule_text: 'the same PyTorch and CUDA (major.minor)',
      exact: false
    });
    expect(question).toContain('saved in vision (conda) · PyTorch 2.9 · CUDA 12.1');
    expect(question).toContain('other (conda) has the same PyTorch and CUDA');
  });
});
