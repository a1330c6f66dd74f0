import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from './agent-config.js';

describe('loadAgentConfig', () => {
  it('reads flags, with repeatable and comma-separated runtimes and labels', () => {
    const c = loadAgentConfig(
      [
        '--runtime',
        'process',
        '--runtime',
        'docker,fake',
        '--max-runs',
        '4',
        '--label',
        'gpu=a100',
        '--labels',
        'os=linux,zone=b',
        '--once',
        '--lease-ms',
        '5000',
        '--state-dir',
        '/tmp/s',
      ],
      {},
    );
    expect(c).toMatchObject({
      runtimes: ['process', 'docker', 'fake'],
      maxRuns: 4,
      labels: { gpu: 'a100', os: 'linux', zone: 'b' },
      once: true,
      link: true,
      leaseMs: 5000,
      stateDir: '/tmp/s',
    });
  });

  it('falls back to the environment, flags winning', () => {
    const env = {
      RUNT_DEFAULT_RUNTIME: 'fake',
      RUNT_LEASE_MS: '9000',
      RUNT_STATE_DIR: '/var/s',
      RUNT_MAX_RUNS: '3',
      RUNT_AGENT_LINK: '0',
    };
    expect(loadAgentConfig([], env)).toMatchObject({
      runtimes: ['fake'],
      leaseMs: 9000,
      stateDir: '/var/s',
      maxRuns: 3,
      link: false,
    });
    expect(loadAgentConfig(['--lease-ms', '4000'], env).leaseMs).toBe(4000);
  });

  it('puts the state dir under the config dir by default and defaults the signals', () => {
    const c = loadAgentConfig(['--runtime', 'process'], { RUNT_CONFIG_DIR: '/etc/runt' });
    expect(c.stateDir).toBe('/etc/runt/state');
    expect(c.shutdownSignals).toEqual(['SIGTERM', 'SIGINT']);
    expect(c.maxRuns).toBe(1);
  });

  it('refuses bad values in one line naming the setting', () => {
    expect(() => loadAgentConfig([], {})).toThrow(/runtimes: name at least one runtime/);
    expect(() => loadAgentConfig(['--runtime', 'process', '--max-runs', '0'], {})).toThrow(/maxRuns/);
    expect(() => loadAgentConfig(['--runtime', 'process', '--label', 'novalue'], {})).toThrow(
      /invalid label "novalue"/,
    );
    expect(() => loadAgentConfig(['--runtime', 'process', '--token', 'rnt_ws_x'], {})).toThrow(
      /Unknown option '--token'/,
    );
    expect(() => loadAgentConfig(['--runtime', 'process', '--shutdown-signal', 'SIGFOO'], {})).toThrow(
      /shutdownSignals/,
    );
  });

  it('takes --log-format or RUNT_LOG_FORMAT (pretty or json), else leaves it to the terminal', () => {
    expect(loadAgentConfig(['--runtime', 'fake'], {}).logFormat).toBeUndefined();
    expect(loadAgentConfig(['--runtime', 'fake'], { RUNT_LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(
      loadAgentConfig(['--runtime', 'fake', '--log-format', 'pretty'], { RUNT_LOG_FORMAT: 'json' }).logFormat,
    ).toBe('pretty');
    expect(() => loadAgentConfig(['--runtime', 'fake', '--log-format', 'xml'], {})).toThrow(/logFormat/);
  });

  it('takes --prefetch or RUNT_PREFETCH (0..10000, default 0), the flag winning', () => {
    expect(loadAgentConfig(['--runtime', 'fake'], {}).prefetch).toBe(0);
    expect(loadAgentConfig(['--runtime', 'fake'], { RUNT_PREFETCH: '25' }).prefetch).toBe(25);
    expect(loadAgentConfig(['--runtime', 'fake', '--prefetch', '3'], { RUNT_PREFETCH: '25' }).prefetch).toBe(
      3,
    );
    expect(() => loadAgentConfig(['--runtime', 'fake', '--prefetch', '-1'], {})).toThrow(/prefetch/);
    expect(() => loadAgentConfig(['--runtime', 'fake', '--prefetch', '10001'], {})).toThrow(/prefetch/);
    expect(() => loadAgentConfig(['--runtime', 'fake', '--prefetch', '1.5'], {})).toThrow(/prefetch/);
  });
});
