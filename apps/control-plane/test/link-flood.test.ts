import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINK_CLOSE_CODES } from '@runt/protocol';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { startHarness, type Harness } from './harness.js';
import { pairAgent, uniqueRuntime } from './agent-double.js';

/** Issue 8, defect 9: one workstation token flooding its link must not starve everyone else. */
describe.each(TEST_BACKENDS)('a flooded agent link on %s', (backend) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(backend);
  });
  afterAll(async () => h?.close());

  it('is closed as rate-limited, the control plane keeps answering, and the agent can link again', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'flooder', [runtime]);
    await agent.connect();
    const register = JSON.stringify({
      type: 'register',
      workstation: {
        display_name: 'flooder',
        cpu_count: 1,
        runtimes: [runtime],
        agent_version: '1',
        listening: true,
      },
      running_run_ids: [],
    });
    for (let i = 0; i < 5000 && agent.link!.readyState === agent.link!.OPEN; i++) agent.link!.send(register);
    const closed = await agent.waitClosed();
    expect(closed.code).toBe(LINK_CLOSE_CODES.rateLimited);
    expect((await h.api('/healthz')).status).toBe(200);
    await agent.connect();
    expect(agent.closed).toBeUndefined();
  });
});
