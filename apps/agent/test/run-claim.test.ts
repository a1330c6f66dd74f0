import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, type ControlPlaneClient } from '@runt/protocol';
import { claimUntilKnown } from '../src/run-claim.js';
import { startTestControlPlane, testLogger, type TestControlPlane } from './control-plane.js';

let h: TestControlPlane;
beforeAll(async () => {
  h = await startTestControlPlane();
});
afterAll(async () => {
  await h?.close();
});

/** Offers a fresh run to the test workstation. */
async function offered(): Promise<string> {
  await h.register(['fake']);
  const { run } = await h.admin.submitRun({ runtime: 'fake', command: ['x'] });
  for (let i = 0; (await h.admin.getRun(run.id)).run.status !== 'offered'; i++) {
    if (i > 200) throw new Error('never offered');
    await new Promise((r) => setTimeout(r, 50));
  }
  return run.id;
}

describe('claimUntilKnown (issue 8: a claim whose answer was lost)', () => {
  it('asks again when the answer is lost after the control plane applied the claim, and gets the same lease', async () => {
    const runId = await offered();
    let lost = 0;
    // The request reaches the real control plane, which applies it; its answer is lost on the
    // way back (what a timed-out request under load looks like to the agent).
    const client: Pick<ControlPlaneClient, 'claimRun'> = {
      async claimRun(id, body) {
        const answer = await h.ws.claimRun(id, body);
        if (lost++ < 2) throw new ApiError(0, 'unreachable', 'cannot reach the control plane: timed out');
        return answer;
      },
    };
    const { logger } = testLogger();
    const got = await claimUntilKnown({
      client,
      runId,
      runnerId: 'r1',
      leaseMs: 30_000,
      logger,
      backoff: { baseMs: 10, capMs: 20 },
    });
    expect(lost).toBe(3);
    expect(got?.claim.run).toMatchObject({ id: runId, status: 'accepted', attempt: 1 });
    // The lease it holds is the one the first (lost) answer granted: a re-claim is idempotent.
    const run = (await h.admin.getRun(runId)).run;
    expect(run.lease).toMatchObject({ fencing_token: got!.claim.fencing_token });
    expect(got!.claim.fencing_token).toBe(1);
    // The run is ours to run and to finish; nothing was left for the sweeper to fail.
    await h.ws.reportStatus(runId, { fencing_token: got!.claim.fencing_token, status: 'running' });
    await h.ws.reportStatus(runId, {
      fencing_token: got!.claim.fencing_token,
      status: 'completed',
      exit_code: 0,
    });
    expect((await h.admin.getRun(runId)).run.status).toBe('completed');
  });

  it('stops at a refusal (4xx) and at the bound when nobody ever answers', async () => {
    const runId = await offered();
    const { logger } = testLogger();
    // Another runner of the same workstation holds it: 409, decided, not retried.
    await h.ws.claimRun(runId, { runner_id: 'other', lease_ms: 30_000 });
    let tries = 0;
    const refusedOnce = await claimUntilKnown({
      client: {
        claimRun: (id, body) => {
          tries++;
          return h.ws.claimRun(id, body);
        },
      },
      runId,
      runnerId: 'r2',
      leaseMs: 30_000,
      logger,
    });
    expect(refusedOnce).toBeUndefined();
    expect(tries).toBe(1);

    const silent = await claimUntilKnown({
      client: { claimRun: () => Promise.reject(new ApiError(0, 'unreachable', 'cannot reach: refused')) },
      runId,
      runnerId: 'r3',
      leaseMs: 30_000,
      logger,
      boundMs: 200,
      backoff: { baseMs: 10, capMs: 20 },
    });
    expect(silent).toBeUndefined();
  });
});
