import { describe, expect, it } from 'vitest';
import { agentNodeArgsOf } from '../src/runt-system.js';

describe('BENCH_AGENT_NODE_ARGS / BENCH_AGENT_ODD_NODE_ARGS', () => {
  it('gives the odd-numbered agents their own flags, the even ones the common flags', () => {
    const o = { agentNodeArgs: ['--max-semi-space-size=16'], oddAgentNodeArgs: ['--max-semi-space-size=8'] };
    expect([0, 1, 2, 3].map((i) => agentNodeArgsOf(i, o))).toEqual([
      ['--max-semi-space-size=16'],
      ['--max-semi-space-size=8'],
      ['--max-semi-space-size=16'],
      ['--max-semi-space-size=8'],
    ]);
  });

  it('odd flags alone leave the even agents without flags (started through the CLI)', () => {
    expect(agentNodeArgsOf(0, { oddAgentNodeArgs: ['--single-threaded-gc'] })).toEqual([]);
    expect(agentNodeArgsOf(1, { oddAgentNodeArgs: ['--single-threaded-gc'] })).toEqual([
      '--single-threaded-gc',
    ]);
  });

  it('without odd flags every agent gets the common ones; without any, none', () => {
    expect(agentNodeArgsOf(1, { agentNodeArgs: ['--a'] })).toEqual(['--a']);
    expect(agentNodeArgsOf(1, {})).toEqual([]);
  });
});
