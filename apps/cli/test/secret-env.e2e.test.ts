import { createHash, randomBytes } from 'node:crypto';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runt } from './cli.js';
import { allEvents, eventually, startRunsHarness, terminal, type RunsHarness } from './runs-harness.js';

// Secret env entries (issue 12), end to end: a real control plane, a real `runt workstation run`
// on the process runtime. The workload gets the value; every read (API, events, CLI --json,
// panel HTML, the database row) shows the name with *** and never the value; the output that
// echoes it is masked by the agent, also when the value is split across two writes.
describe.each(TEST_BACKENDS)('secret env on %s', (backend) => {
  let h: RunsHarness;
  // random, so a match anywhere can only come from this test's submit
  const secret = `s3cr3t-${randomBytes(9).toString('hex')}`;
  const fromShell = `sh3ll-${randomBytes(9).toString('hex')}`;

  beforeAll(async () => {
    // Postgres: replicas share a configured key (none would refuse secrets, tested below)
    h = await startRunsHarness(
      backend,
      backend === 'postgres' ? { secretKey: randomBytes(32).toString('base64') } : {},
    );
    await h.startAgent('secrets', ['--runtime', 'process', '--max-runs', '2']);
  }, 120_000);
  afterAll(async () => h?.close());

  it('the workload sees the value; no read shows it; the output echoing it is masked', async () => {
    const script = [
      // whole, then split across two writes with a pause (two chunks), then the shell one
      'echo "whole: $API_TOKEN"',
      'v="$API_TOKEN"; half=$((${#v} / 2))',
      'printf "split: %s" "$(printf %s "$v" | cut -c1-$half)"; sleep 1',
      'printf "%s\\n" "$(printf %s "$v" | cut -c$((half + 1))-)"',
      'echo "shell: $FROM_SHELL"',
      // the workload has the value itself: its digest (the value never goes in the command)
      'echo "digest: $(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)"',
    ].join('; ');
    const r = await runt(
      [
        'run',
        'submit',
        '--runtime',
        'process',
        '--json',
        '--secret-env',
        `API_TOKEN=${secret}`,
        '--secret-env',
        'FROM_SHELL',
        '--',
        '/bin/sh',
        '-c',
        script,
      ],
      { ...h.adminEnv, FROM_SHELL: fromShell },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).not.toContain(secret);
    expect(r.stdout).not.toContain(fromShell);
    const id = JSON.parse(r.stdout).run.id as string;
    const run = await terminal(h.admin, id);
    expect(run.status, run.failure_message ?? '').toBe('completed');
    expect(run.env).toMatchObject({ API_TOKEN: '***', FROM_SHELL: '***' });
    expect(run.secret_env_names?.sort()).toEqual(['API_TOKEN', 'FROM_SHELL']);

    const events = await allEvents(h.admin, id);
    const out = events
      .filter((e) => e.type === 'log' && e.payload.stream === 'stdout')
      .map((e) => e.payload.data)
      .join('');
    expect(out).toContain('whole: ***\n');
    expect(out).toContain('split: ***\n');
    expect(out).toContain('shell: ***\n');
    expect(out).toContain(`digest: ${createHash('sha256').update(secret).digest('hex')}\n`);

    const reads = [
      JSON.stringify(events),
      JSON.stringify(await h.admin.getRun(id)),
      JSON.stringify(await h.admin.listRuns({})),
      (await runt(['run', 'show', id, '--json'], h.adminEnv)).stdout,
      (await runt(['run', 'show', id], h.adminEnv)).stdout,
      (await runt(['run', 'list', '--json'], h.adminEnv)).stdout,
      (await runt(['run', 'logs', id], h.adminEnv)).stdout,
      await panelRunPage(h, id),
      await (await fetch(`${h.cp.url}/openapi.json`)).text(),
      await (await fetch(`${h.cp.url}/metrics`)).text(),
      h.agents[0]!.output(),
    ];
    for (const text of reads) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(fromShell);
    }
    // The row holds the sealed values only.
    const row = await h.t.db.query<{ env: unknown; secret_env: Record<string, { kid: string; ct: string }> }>(
      'select env, secret_env from runs where id = $1',
      [id],
    );
    const stored = JSON.stringify(row.rows[0]);
    expect(stored).not.toContain(secret);
    expect(stored).not.toContain(fromShell);
    expect(stored).not.toContain(Buffer.from(secret).toString('base64'));
    expect(Object.keys(row.rows[0]!.secret_env).sort()).toEqual(['API_TOKEN', 'FROM_SHELL']);
  });

  it('a malformed --secret-env is one line and a nonzero exit', async () => {
    const bad = await runt(
      ['run', 'submit', '--runtime', 'process', '--secret-env', '1BAD=x', '--', 'true'],
      h.adminEnv,
    );
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr.trim()).toBe(
      'runt: invalid --secret-env "1BAD": use NAME=VALUE or NAME (letters, digits and _)',
    );
    const unset = await runt(
      ['run', 'submit', '--runtime', 'process', '--secret-env', 'NOT_SET_ANYWHERE', '--', 'true'],
      h.adminEnv,
    );
    expect(unset.exitCode).not.toBe(0);
    expect(unset.stderr.trim()).toBe(
      'runt: --secret-env NOT_SET_ANYWHERE: NOT_SET_ANYWHERE is not set in this environment (or use NAME=VALUE)',
    );
  });
});

describe('secret env on Postgres without a secret key', () => {
  let h: RunsHarness;
  beforeAll(async () => {
    h = await startRunsHarness('postgres');
  }, 120_000);
  afterAll(async () => h?.close());

  it('refuses a run with secrets with 400 secrets-unavailable (and takes runs without)', async () => {
    const res = await fetch(`${h.cp.url}/api/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.adminEnv.RUNT_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        runtime: 'process',
        command: ['true'],
        env: { T: { value: 'x', secret: true } },
      }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('secrets-unavailable');
    const plain = await h.admin.submitRun({ runtime: 'process', command: ['true'], env: { A: '1' } });
    expect(plain.run.env).toEqual({ A: '1' });
  });
});

/** The panel's page of a run, signed in with the admin token as a browser form would. */
async function panelRunPage(h: RunsHarness, id: string): Promise<string> {
  const signIn = await fetch(`${h.cp.url}/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: h.cp.url },
    body: new URLSearchParams({ token: h.adminEnv.RUNT_ADMIN_TOKEN!, next: '/runs' }),
    redirect: 'manual',
  });
  const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0]!;
  const page = await eventually(async () => {
    const res = await fetch(`${h.cp.url}/runs/${id}`, { headers: { cookie } });
    return res.status === 200 ? res.text() : undefined;
  }, 'the panel run page');
  expect(page).toContain('API_TOKEN=');
  const log = await (await fetch(`${h.cp.url}/runs/${id}/log`, { headers: { cookie } })).text();
  return page + log;
}
