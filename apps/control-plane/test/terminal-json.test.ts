import { describe, expect, it } from 'vitest';
import { failureKindSchema, TERMINAL_RUN_STATUSES } from '@runt/protocol';
import { terminalJson, terminalPayload, type TerminalOutcome } from '../src/runs/transitions.js';

// A batched finish writes each run's `terminal_status` payload from `terminalJson` (issue 9: no
// payload object per run): it must be the very text `JSON.stringify(terminalPayload(f))` is,
// which the checked path (`finishLocked`) stores, for every outcome a report can carry.
describe('terminalJson', () => {
  it('is JSON.stringify(terminalPayload(f)) for every status, exit code, failure kind and message', () => {
    const exitCodes = [undefined, 0, 1, -1, 137, 255, 2_147_483_647];
    const kinds = [undefined, ...failureKindSchema.options];
    const messages = [
      undefined,
      '',
      'x',
      'said "no" \\ and left\n\ttab',
      'ünïcødé ☃ \u2028 \u0001',
      'a'.repeat(4096),
    ];
    let n = 0;
    for (const status of TERMINAL_RUN_STATUSES)
      for (const exitCode of exitCodes)
        for (const failureKind of kinds)
          for (const message of messages)
            for (const startedMsAgo of [undefined, 0, 12.5]) {
              const f = { status } as TerminalOutcome;
              if (exitCode !== undefined) f.exitCode = exitCode;
              if (failureKind !== undefined) f.failureKind = failureKind;
              if (message !== undefined) f.message = message;
              if (startedMsAgo !== undefined) f.startedMsAgo = startedMsAgo;
              expect(terminalJson(f), JSON.stringify(f)).toBe(JSON.stringify(terminalPayload(f)));
              n++;
            }
    expect(n).toBeGreaterThan(1000);
  });

  it('keeps an outcome whose optional keys are present but undefined as the payload does', () => {
    const f: TerminalOutcome = {
      status: 'failed',
      exitCode: undefined,
      failureKind: undefined,
      message: undefined,
    };
    expect(terminalJson(f)).toBe(JSON.stringify(terminalPayload(f)));
    expect(JSON.parse(terminalJson(f))).toEqual({ status: 'failed' });
  });
});
