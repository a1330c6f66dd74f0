import { randomBytes } from 'node:crypto';
import { TEST_BACKENDS } from '@runt/sql/testing';
import type { Queryable } from '@runt/sql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimOnOffer } from '../src/runs/transitions.js';
import { eventually, pairAgent, uniqueRuntime } from './agent-double.js';
import { openTestLink, startHarness, type Harness } from './harness.js';

// Issue 9: a claim on offer reads each claimed run back as one JSON column (`row_to_json`), not
// as its 40 columns, which the driver decoded one by one (on PGlite most of the statement's CPU
// on our side). The run an `offer-claimed` carries must stay, byte for byte, the run a read of it
// answers.
describe.each(TEST_BACKENDS)('a run claimed on offer, on %s', (backend) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(
      backend,
      {},
      {
        schedulerTickMs: 100,
        sweepIntervalMs: 100,
        linkPingMs: 5_000,
        secretKey: randomBytes(32).toString('base64'),
      },
    );
  });
  afterAll(async () => h?.close());

  it('is sent exactly as a read of it answers, every field set, secrets opened for its runner', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'claim-row', [runtime]);
    // queued before any link offers its runtime, so a scheduling pass claims it on offer
    const submitted = await h.api('/api/runs/batch', {
      token: h.adminToken,
      body: {
        runs: [
          {
            runtime,
            image: 'img:1',
            command: ['sh', '-c', 'echo "é ✓"'],
            env: { LONGER_NAME: 'a', B: 'b', TOKEN: { value: 's3cret', secret: true } },
            workdir: '/w',
            ready_when: { log_line: 'ready' },
            resources: { cpus: 0.3, memory_bytes: 1_048_576 },
            timeout_s: 60,
            queue_timeout_s: 600,
            retry: { on: ['runner-lost', 137], backoff: { max_s: 30, initial_s: 1.5 } },
          },
        ],
      },
    });
    expect(submitted.status).toBe(201);
    const id: string = submitted.json.runs[0].run.id;
    const link = await openTestLink(h, agent.token, 'claim-row', [runtime], {
      runner_id: 'r1',
      lease_ms: 30_000,
    });
    const raw = await eventually(
      () => link.raw.find((m) => m.includes('"offer-claimed"') && m.includes(id)),
      'claimed on offer',
    );
    const claim = (JSON.parse(raw) as { runs: Array<{ run: unknown; secret_env: unknown }> }).runs[0]!;
    const read = await h.api(`/api/runs/${id}`, { token: h.adminToken });
    const { attempts: _a, pending_reason: _p, ...run } = read.json.run;
    expect(run.status).toBe('accepted');
    expect(JSON.stringify(claim.run)).toBe(JSON.stringify(run));
    expect(claim.secret_env).toEqual({ TOKEN: 's3cret' });
    link.ws.close();
  });

  it('reads each claimed run back as one column, not its row of 40', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, 'claim-width', [runtime]);
    const submitted = await h.api('/api/runs/batch', {
      token: h.adminToken,
      body: { runs: [{ runtime }, { runtime }] },
    });
    const ids: string[] = submitted.json.runs.map((o: { run: { id: string } }) => o.run.id);
    const widths: number[] = [];
    const q: Queryable = {
      query: async (text, params) => {
        const out = await h.cp.db.query(text, params);
        widths.push(...out.rows.map((row) => Object.keys(row as object).length));
        return out;
      },
    } as Queryable;
    const grants = await claimOnOffer(
      q,
      ids.map((runId) => ({
        id: runId,
        ws: agent.workstationId,
        holder: `${agent.workstationId}/r1`,
        leaseMs: 30_000,
      })),
    );
    expect(grants.map((g) => [g.run.id, g.run.status, g.run.lease?.fencing_token])).toEqual(
      ids.map((runId, n) => [runId, 'accepted', grants[n]!.fencingToken]),
    );
    // the run (one json column), its lease's holder, token and expiry, and whether it has commands
    expect(widths).toEqual([5, 5]); // was 40: `r.*` and the lease’s columns
  });
});
