import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ApiError, TransportError } from '@runt/protocol';
import { mintToken } from '@runt/transport-auth';
import { createLogger } from './create-logger.js';
import { colourEnabled, prettyLine } from './log-format.js';
import { formatDuration, Reachability, unreachableReason } from './reachability.js';

function sink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _e, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { stream, lines };
}

describe('pretty log lines', () => {
  it('is time, level, message and key=value, quoting what needs it, errors by message only', () => {
    const time = new Date(2026, 10, 30, 12, 4, 35).toISOString();
    const line = prettyLine(
      {
        level: 40,
        time,
        service: 'runt-agent',
        msg: 'claim refused',
        run_id: 'run_1',
        runtimes: ['process', 'docker'],
        reason: 'a b',
        adopted: [],
        err: { type: 'Error', message: 'boom\nsecond line', stack: 'Error: boom\n    at x (y.js:1:1)' },
      },
      false,
    );
    expect(line).toBe(
      '12:04:35 WARN  claim refused run_id=run_1 runtimes=process,docker reason="a b" err=boom',
    );
    expect(prettyLine({ level: 30, time, msg: 'x' }, true)).toBe(
      '\x1b[2m12:04:35\x1b[0m \x1b[36mINFO \x1b[0m x',
    );
  });

  it('goes through the same redaction as JSON', () => {
    const token = mintToken('workstation');
    const { stream, lines } = sink();
    const log = createLogger('info', stream, 'pretty', {});
    log.info({ header: `Bearer ${token}` }, `token ${token}`);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/INFO {2}token rnt_ws_…\[redacted\]/);
    expect(lines[0]).not.toContain(token.slice('rnt_ws_'.length));
  });
});

describe('colourEnabled, the one colour rule of the agent and the CLI', () => {
  const tty = { isTTY: true };
  const pipe = { isTTY: false };
  it('colours a terminal, not a pipe', () => {
    expect(colourEnabled(tty, {})).toBe(true);
    expect(colourEnabled(pipe, {})).toBe(false);
  });
  it('is off with NO_COLOR (not when empty), TERM=dumb and FORCE_COLOR=0/false', () => {
    expect(colourEnabled(tty, { NO_COLOR: '1' })).toBe(false);
    expect(colourEnabled(tty, { NO_COLOR: '' })).toBe(true);
    expect(colourEnabled(tty, { TERM: 'dumb' })).toBe(false);
    expect(colourEnabled(tty, { FORCE_COLOR: '0' })).toBe(false);
    expect(colourEnabled(tty, { FORCE_COLOR: 'false' })).toBe(false);
  });
  it('FORCE_COLOR colours even a pipe, and wins over NO_COLOR and TERM=dumb', () => {
    expect(colourEnabled(pipe, { FORCE_COLOR: '1' })).toBe(true);
    expect(colourEnabled(pipe, { FORCE_COLOR: '1', NO_COLOR: '1', TERM: 'dumb' })).toBe(true);
  });
  it("decides the agent's pretty lines: FORCE_COLOR colours them when piped, TERM=dumb keeps a terminal plain", () => {
    const piped = sink();
    createLogger('info', piped.stream, 'pretty', { FORCE_COLOR: '1' }).info('hello');
    expect(piped.lines[0]).toContain('\x1b[36mINFO');
    const plain = sink();
    createLogger('info', plain.stream, 'pretty', {}).info('hello');
    expect(plain.lines[0]).not.toContain('\x1b[');
    const terminal = sink();
    Object.assign(terminal.stream, { isTTY: true });
    createLogger('info', terminal.stream, 'pretty', {}).info('on a terminal');
    expect(terminal.lines[0]).toContain('\x1b[36mINFO');
    createLogger('info', terminal.stream, 'pretty', { TERM: 'dumb' }).info('dumb terminal');
    expect(terminal.lines[1]).not.toContain('\x1b[');
  });
});

describe('Reachability', () => {
  it('logs one line when the control plane goes and one when it is back, the rest at debug', () => {
    const { stream, lines } = sink();
    let now = 0;
    const reach = new Reachability(createLogger('debug', stream), () => now);
    const refused = new TransportError('network', 'ECONNREFUSED');
    reach.reached();
    for (let i = 0; i < 20; i++) {
      now += 500;
      expect(reach.failed('http://cp:8787', refused, 'polling for offers', now)).toBe(true);
    }
    expect(reach.failed('http://cp:8787', new ApiError(409, 'conflict', 'no'), 'x')).toBe(false);
    now += 2_300;
    reach.reached();
    reach.reached();
    const entries = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    const loud = entries.filter((e) => e.level >= 30).map((e) => e.msg);
    expect(loud).toEqual([
      'control plane unreachable at http://cp:8787: ECONNREFUSED; retrying',
      'reconnected after 12s',
    ]);
    expect(entries.filter((e) => e.level === 20)).toHaveLength(20);
  });

  it('ignores a failure of a call begun before the last answer', () => {
    const { stream, lines } = sink();
    let now = 0;
    const reach = new Reachability(createLogger('info', stream), () => now);
    now = 10;
    reach.reached();
    reach.failed('http://cp', new TransportError('network', 'ECONNREFUSED'), 'heartbeat', 5);
    expect(reach.down).toBe(false);
    expect(lines).toEqual([]);
  });

  it('names the reason of an unreachable control plane', () => {
    expect(unreachableReason(new ApiError(0, 'unreachable', 'cannot reach http://x: ETIMEDOUT'))).toBe(
      'ETIMEDOUT',
    );
    expect(unreachableReason(new ApiError(503, 'http-error', 'x'))).toBe('answered 503');
    expect(unreachableReason(new ApiError(401, 'unauthorized', 'x'))).toBeUndefined();
    expect([850, 12_400, 185_000, 7_900_000].map(formatDuration)).toEqual(['850ms', '12s', '3m05s', '2h11m']);
  });
});
