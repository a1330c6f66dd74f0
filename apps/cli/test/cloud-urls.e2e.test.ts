import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient, type Run } from '@runt/protocol';
import { loadConfig, startControlPlane, type RunningControlPlane } from '@runt/control-plane';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import { runt } from './cli.js';

/** A URL nothing listens on (a port that was free a moment ago). */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

/**
 * Several control-plane URLs (replicas without a load balancer) for `runt workstation connect`
 * and `runt workstation run`: the credential keeps them all, the agent fails over between them.
 */
describe('control-plane URL lists in the CLI', () => {
  let t: TestDatabase;
  let cp: RunningControlPlane;
  let admin: ControlPlaneClient;
  const adminToken = mintToken('admin');
  const env = { RUNT_CONFIG_DIR: join(mkdtempSync(join(tmpdir(), 'runt-urls-')), 'config') };

  beforeAll(async () => {
    t = await createTestDatabase('pglite');
    cp = await startControlPlane(
      loadConfig(
        {},
        { host: '127.0.0.1', port: 0, adminToken, dataDir: mkdtempSync(join(tmpdir(), 'runt-cp-')) },
      ),
      { db: t.db, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) },
    );
    admin = new ControlPlaneClient({ url: cp.url, token: adminToken, retries: 0 });
  });
  afterAll(async () => {
    await cp?.close();
    await t?.dispose();
  });

  const finished = async (id: string): Promise<Run> => (await admin.getRun(id)).run;

  it('connect redeems at the first URL that answers and stores them all; run --once fails over from a dead first URL', async () => {
    const dead = await deadUrl();
    const { pairing } = await admin.mintPairingCode();
    const connected = await runt(
      ['workstation', 'connect', `${dead}, ${cp.url}`, '--code', pairing.code, '--name', 'urls-box'],
      env,
    );
    expect(connected.exitCode, connected.stderr).toBe(0);
    const cred = JSON.parse(readFileSync(join(env.RUNT_CONFIG_DIR, 'workstation.json'), 'utf8'));
    expect(cred).toMatchObject({ cloud_url: dead, cloud_urls: [dead, cp.url], display_name: 'urls-box' });

    // The stored list reaches the agent: its first URL is dead, the run is still taken.
    const { run } = await admin.submitRun({
      runtime: 'process',
      command: ['echo', 'via-stored-list'],
      placement: { workstation_id: cred.workstation_id },
    });
    const stored = await runt(['workstation', 'run', '--runtime', 'process', '--once'], env);
    expect(stored.exitCode, stored.stderr).toBe(0);
    expect(await finished(run.id)).toMatchObject({ status: 'completed', exit_code: 0 });
  }, 120_000);

  it('run --url takes a list over the stored one; a bad entry is one line and a nonzero exit', async () => {
    const cred = JSON.parse(readFileSync(join(env.RUNT_CONFIG_DIR, 'workstation.json'), 'utf8'));
    const { run } = await admin.submitRun({
      runtime: 'process',
      command: ['echo', 'via-flag'],
      placement: { workstation_id: cred.workstation_id },
    });
    const flagged = await runt(
      ['workstation', 'run', '--runtime', 'process', '--once', '--url', `${await deadUrl()},${cp.url}`],
      env,
    );
    expect(flagged.exitCode, flagged.stderr).toBe(0);
    expect(await finished(run.id)).toMatchObject({ status: 'completed', exit_code: 0 });

    const bad = await runt(['workstation', 'run', '--once', '--url', `${cp.url},ftp://x`], env);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('ftp://x');
  }, 120_000);
});
