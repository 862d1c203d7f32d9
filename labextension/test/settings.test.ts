import { describe, expect, it } from 'vitest';

import { settingsBannerText } from '../src/settings';

const problem = {
  setting: 'c.GpuEnv.probe_timeout',
  value: "'fast'",
  expected: 'a float',
  consequence: 'the default (60.0) is used',
  message: "c.GpuEnv.probe_timeout = 'fast' is invalid"
};

describe('settingsBannerText', () => {
  it('shows nothing without problems or before the status is known', () => {
    expect(settingsBannerText(null)).toBeNull();
    expect(settingsBannerText({ admin: true, problems: [] })).toBeNull();
  });

  it('counts the problems and tells an admin what to do', () => {
    const text = settingsBannerText({ admin: true, problems: [problem, problem] });
    expect(text?.title).toBe("2 invalid settings in the server's configuration");
    expect(text?.detail).toContain('jupyter_server_config.py');
  });

  it('tells a Hub user who can fix it', () => {
    const text = settingsBannerText({ admin: false, problems: [problem] });
    expect(text?.title).toBe("1 invalid setting in the server's configuration");
    expect(text?.detail).toContain('administrator');
  });
});
