import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../src/agent.js';
import { eventually, startTestControlPlane, testAgent, type TestControlPlane } from './control-plane.js';

/** A counter from the control plane's /metrics, summed over its labels (0 before its first count). */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) =>
      name.includes('{') ? l.startsWith(name) : l.startsWith(`${name} `) || l.startsWith(`${name}{`),
    )
    .reduce((s, l) => s + Number(l.split(' ').pop()), 0);
}

/** Claim requests served, over HTTP or as link requests. */
async function claimRequests(url: string): Promise<number> {
  return (
    (await metric(url, 'runt_cp_http_requests_total{method="POST",route="/api/runs/:id/claim"')) +
    (await metric(url, 'runt_cp_link_requests_total{op="claim"'))
  );
}

/** Pairs one more workstation and returns its token. */
async function pair(t: TestControlPlane, name: string): Promise<string> {
  const minted = await t.admin.mintPairingCode();
  const res = await fetch(`${t.url}/api/workstations/pairing-codes/redeem`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: minted.pairing.code, display_name: name }),
  });
  return ((await res.json()) as { credential: { token: string } }).credential.token;
}

const AGENTS = 3;
const RUNS = 120;

// Issue 9, "no offer churn": with healthy agents each run is offered once (one offer message,
// one placement) and nothing is re-queued. The backlog is submitted before the agents start, as
// the bench's drain does: each agent registers over HTTP first (the scheduler may place onto it
// then), and its link's `register` re-sends what was offered to it. Before, an agent answered such
// a re-sent offer of a run it was claiming `ok:false`, which re-queued it (206 placements and 6
// re-queues for 200 runs), and declined offers made while a held run was reporting its end.
describe.each(TEST_BACKENDS)('offers over real agents on %s', (backend) => {
  let t: TestControlPlane;
  const dirs: string[] = [];
  const agents: Agent[] = [];
  const running: Array<Promise<void>> = [];

  beforeAll(async () => {
    t = await startTestControlPlane(backend);
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.shutdown({ graceMs: 0 })));
    await Promise.allSettled(running);
    await t.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  async function startAgents(): Promise<void> {
    const tokens = [t.token];
    for (let i = 1; i < AGENTS; i++) tokens.push(await pair(t, `agent-${i}`));
    for (const token of tokens) {
      const dir = mkdtempSync(join(tmpdir(), 'runt-offers-'));
      dirs.push(dir);
      const agent = testAgent({
        url: t.url,
        token,
        maxRuns: 3,
        stateDir: dir,
      });
      agents.push(agent);
      running.push(agent.run());
    }
  }

  it('N agents, M runs: every run offered exactly once, in at most one offer message, none re-queued', async () => {
    const before = {
      claimedOnOffer: await metric(t.url, 'runt_cp_runs_claimed_on_offer_total'),
      claims: await claimRequests(t.url),
      placed: await metric(t.url, 'runt_cp_run_offers_total'),
      messages: await metric(t.url, 'runt_cp_offer_messages_total'),
      requeued: await metric(t.url, 'runt_cp_run_requeues_total'),
    };
    const ids = (
      await Promise.all(
        Array.from({ length: RUNS }, () => t.admin.submitRun({ runtime: 'fake', command: ['true'] })),
      )
    ).map((r) => r.run.id);
    await startAgents();
    await eventually(
      async () => {
        const { runs } = await t.admin.listRuns({ status: 'completed', limit: 500 });
        return runs.length === RUNS;
      },
      'every run completed',
      120_000,
    );
    const on = new Set((await t.admin.listRuns({ limit: 500 })).runs.map((r) => r.workstation_id));
    expect(on.size).toBe(AGENTS); // all agents took part
    expect(ids).toHaveLength(RUNS);
    expect((await metric(t.url, 'runt_cp_run_offers_total')) - before.placed).toBe(RUNS);
    // At most one message per run: an agent that polls before its link registers claims a few
    // without any (the register then has nothing left to re-send for them).
    expect((await metric(t.url, 'runt_cp_offer_messages_total')) - before.messages).toBeLessThanOrEqual(RUNS);
    expect((await metric(t.url, 'runt_cp_run_requeues_total')) - before.requeued).toBe(0);
    // Claim on offer: a run placed while its agent's link is registered comes leased, with no
    // claim request; only runs placed before (the agent registers over HTTP first) are claimed
    // (over HTTP, or as a link request once the link is up).
    const onOffer = (await metric(t.url, 'runt_cp_runs_claimed_on_offer_total')) - before.claimedOnOffer;
    const claims = (await claimRequests(t.url)) - before.claims;
    expect(onOffer).toBeGreaterThan(RUNS / 2);
    expect(claims).toBe(RUNS - onOffer);
  }, 180_000);
});
