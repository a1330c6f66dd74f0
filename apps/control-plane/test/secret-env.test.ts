import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { ControlPlaneClient, isApiError } from '@runt/protocol';
import { startHarness, type Harness } from './harness.js';
import { pairAgent, uniqueRuntime } from './agent-double.js';

// Secret env entries on the control plane (issue 12): only the claim answer carries the value;
// the row holds it sealed; a run whose sealed value cannot be opened is failed at its claim
// (never a 500, never offered again).
describe.each(TEST_BACKENDS)('secret env entries on %s', (backend) => {
  let h: Harness;
  let admin: ControlPlaneClient;
  const secret = `v-${randomBytes(12).toString('hex')}`;
  beforeAll(async () => {
    h = await startHarness(
      backend,
      {},
      { schedulerTickMs: 100, sweepIntervalMs: 100, secretKey: randomBytes(32).toString('base64') },
    );
    admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
  }, 180_000);
  afterAll(async () => h?.close());

  async function claimed(runtime: string) {
    const agent = await pairAgent(h, `box-${runtime}`, [runtime]);
    await agent.connect();
    const { run } = await admin.submitRun({
      runtime,
      command: ['true'],
      env: { PLAIN: 'p', API_TOKEN: { value: secret, secret: true } },
    });
    const offer = await agent.waitFor('offer', (m) => m.run.id === run.id);
    return { agent, run, offer };
  }

  it('the claim answer alone carries the value; the offer, reads and the row show ***', async () => {
    const { agent, run, offer } = await claimed(uniqueRuntime());
    expect(run.env).toEqual({ PLAIN: 'p', API_TOKEN: '***' });
    expect(run.secret_env_names).toEqual(['API_TOKEN']);
    expect(JSON.stringify(offer)).not.toContain(secret);
    const claim = await agent.client.claimRun(run.id, { runner_id: 'r1', lease_ms: 30_000 });
    expect(claim.secret_env).toEqual({ API_TOKEN: secret });
    expect(claim.run.env).toEqual({ PLAIN: 'p', API_TOKEN: '***' });
    // a retried claim (and a re-adopting agent) gets them again, same token
    const again = await agent.client.claimRun(run.id, { runner_id: 'r1', lease_ms: 30_000 });
    expect(again).toMatchObject({ fencing_token: claim.fencing_token, secret_env: { API_TOKEN: secret } });
    expect(JSON.stringify(await admin.getRun(run.id))).not.toContain(secret);
    expect(JSON.stringify(await admin.listRuns({}))).not.toContain(secret);
    const row = await h.t.db.query('select * from runs where id = $1', [run.id]);
    expect(JSON.stringify(row.rows)).not.toContain(secret);
    expect(h.logs.join('')).not.toContain(secret);
  });

  it('a run whose secret was sealed with another key fails at its claim, with a 409 and a clear message', async () => {
    const runtime = uniqueRuntime();
    const agent = await pairAgent(h, `box-${runtime}`, [runtime]);
    await agent.connect();
    // queued for a runtime nobody offers yet, then "sealed by another key" in the row
    const { run } = await admin.submitRun({
      runtime,
      command: ['true'],
      env: { API_TOKEN: { value: secret, secret: true } },
      placement: { labels: { never: 'yet' } },
    });
    await h.t.db.query(
      `update runs set secret_env = jsonb_set(secret_env, '{API_TOKEN,kid}', '"0000000000000000"'), placement_labels = '{}' where id = $1`,
      [run.id],
    );
    await admin.submitRun({ runtime, command: ['true'] }); // a submit kicks a scheduling pass
    const offer = await agent.waitFor('offer', (m) => m.run.id === run.id);
    const err = await agent.client
      .claimRun(offer.run.id, { runner_id: 'r1', lease_ms: 30_000 })
      .catch((e: unknown) => e);
    expect(isApiError(err) && err.status).toBe(409);
    expect(isApiError(err) && err.code).toBe('run-not-active');
    const { run: failed } = await admin.getRun(run.id);
    expect(failed).toMatchObject({ status: 'failed', failure_kind: 'internal', lease: null });
    expect(failed.failure_message).toMatch(
      /^cannot open the run's secrets: secret env API_TOKEN was sealed with key 0000000000000000; this control plane has key [0-9a-f]{16}$/,
    );
  });

  it('refuses a malformed secret entry with 400', async () => {
    const res = await h.api('/api/runs', {
      token: h.adminToken,
      body: { runtime: 'process', command: ['true'], env: { T: { value: 1, secret: true } } },
    });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid-request');
  });
});

describe('the secret key of a control plane on its data dir', () => {
  it('is generated once into a 0600 file and used again after a restart', async () => {
    const h = await startHarness('pglite');
    const admin = new ControlPlaneClient({ url: h.cp.url, token: h.adminToken, retries: 0 });
    const file = join(h.dataDir, 'secret-key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const key = readFileSync(file, 'utf8');
    expect(Buffer.from(key.trim(), 'base64')).toHaveLength(32);
    const { run } = await admin.submitRun({
      runtime: 'process',
      command: ['true'],
      env: { T: { value: 'x', secret: true } },
    });
    expect(run.env).toEqual({ T: '***' });
    await h.close();
    // a second start on the same directory reads it, never replaces it
    const { loadSecretBox } = await import('../src/runs/secret-box.js');
    const box = await loadSecretBox({ generateAt: file });
    expect(readFileSync(file, 'utf8')).toBe(key);
    expect(box?.keyId).toMatch(/^[0-9a-f]{16}$/);
  }, 180_000);
});
