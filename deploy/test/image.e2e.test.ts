import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlaneClient, isTerminalRunStatus, type Run } from '@runt/protocol';
import { createTestDatabase, type TestDatabase } from '@runt/sql/testing';
import { mintToken } from '@runt/transport-auth';
import {
  AGENT_BIN,
  DOCKER_HOST,
  REPO,
  RUNT_BIN,
  connectLineOf,
  docker,
  dockerOk,
  eventually,
  freePort,
  logsOf,
  runt,
  writeHaproxyConfig,
} from './engine.js';

// The control plane image on the real Docker engine: `pnpm image` builds it (Node base made
// locally, no registry), then it runs read-only with a /data volume behind the real HAProxy of
// deploy/haproxy.cfg, a workstation pairs from the host with the printed line, a host agent
// (process runtime) runs a job through the load balancer, and a restart keeps both.

const IMAGE = 'runt/control-plane:dev';
const suffix = randomBytes(4).toString('hex');
const containers: string[] = [];
const volumes: string[] = [];
const children: ResultPromise[] = [];

/** `docker run -d` on the host network (the private engine has no bridge), remembered for cleanup. */
async function runContainer(name: string, args: string[]): Promise<void> {
  containers.push(name);
  await dockerOk(['run', '-d', '--name', name, '--network', 'host', ...args, IMAGE]);
}

/** HAProxy with deploy/haproxy.cfg as shipped, but bound to 127.0.0.1 and pointed at local replicas. */
function startHaproxy(lbPort: number, cpPorts: number[]): ResultPromise {
  const lb = execa('haproxy', ['-db', '-f', writeHaproxyConfig(lbPort, cpPorts)], {
    reject: false,
    stdin: 'ignore',
    all: true,
  });
  children.push(lb);
  return lb;
}

/** `runt workstation run --runtime process` for a paired config dir, as a host agent. */
function startAgent(configDir: string): { agent: ResultPromise; output: () => string } {
  let out = '';
  const agent = execa('node', [RUNT_BIN, 'workstation', 'run', '--runtime', 'process'], {
    env: {
      ...process.env,
      RUNT_CLOUD_URL: undefined,
      RUNT_CLOUD_TOKEN: undefined,
      RUNT_ADMIN_TOKEN: undefined,
      RUNT_STATE_DIR: undefined,
      RUNT_CONFIG_DIR: configDir,
    },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    all: true,
  });
  agent.all?.on('data', (d: Buffer) => (out += String(d)));
  children.push(agent);
  return { agent, output: () => out };
}

/** Waits until the workstation is online with a live link. */
function linked(admin: ControlPlaneClient, workstationId: string, what: string) {
  return eventually(async () => {
    const { workstations } = await admin.listWorkstations();
    const w = workstations.find((x) => x.id === workstationId);
    return w?.listening && w.status === 'online' ? w : undefined;
  }, what);
}

function terminal(client: ControlPlaneClient, id: string): Promise<Run> {
  return eventually(async () => {
    const { run } = await client.getRun(id);
    return isTerminalRunStatus(run.status) ? run : undefined;
  }, `run ${id} to finish`);
}

async function stdoutOf(client: ControlPlaneClient, id: string): Promise<string> {
  const { events } = await client.listEvents(id);
  return events
    .filter((e) => e.type === 'log' && e.payload.stream === 'stdout')
    .map((e) => e.payload.data)
    .join('');
}

beforeAll(async () => {
  expect(DOCKER_HOST, 'a Docker engine (scripts/setup-engines.sh)').not.toBe('');
  // turbo built @runt/control-plane before this package's tests (a dependency), so no nested build.
  const built = await execa('bash', ['scripts/build-image.sh'], {
    cwd: REPO,
    env: { DOCKER_HOST, RUNT_IMAGE_SKIP_BUILD: '1' },
    reject: false,
    stdin: 'ignore',
    all: true,
    timeout: 600_000,
  });
  expect(built.exitCode, String(built.all)).toBe(0);
});

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children);
  for (const c of containers) await docker(['rm', '-f', '-v', c]);
  for (const v of volumes) await docker(['volume', 'rm', '-f', v]);
});

describe('the control plane image', () => {
  it('is small, runs as a non-root user, exposes 8787, checks /healthz and keeps its data in /data', async () => {
    const info = JSON.parse(await dockerOk(['image', 'inspect', IMAGE]))[0];
    expect(info.Size).toBeLessThanOrEqual(250 * 1000 * 1000);
    expect(info.Config.User).toBe('10001:10001');
    expect(Object.keys(info.Config.ExposedPorts)).toEqual(['8787/tcp']);
    expect(Object.keys(info.Config.Volumes)).toEqual(['/data']);
    expect(info.Config.Env).toEqual(
      expect.arrayContaining([
        'RUNT_HOST=0.0.0.0',
        'RUNT_PORT=8787',
        'RUNT_DATA_DIR=/data',
        'NODE_ENV=production',
      ]),
    );
    expect(info.Config.Healthcheck.Test.join(' ')).toContain('/healthz');
    expect(info.Config.Entrypoint).toEqual(['node', '/app/dist/bin.js']);
    // Production dependencies only: no test runner, compiler or bundler in the image.
    const modules = await docker([
      'run',
      '--rm',
      '--network',
      'none',
      '--entrypoint',
      'ls',
      IMAGE,
      '/app/node_modules/.pnpm',
    ]);
    expect(modules.exitCode, modules.stderr).toBe(0);
    expect(modules.stdout).toMatch(/^hono@/m);
    expect(modules.stdout).not.toMatch(/^(vitest|typescript|tsup|esbuild)@/m);
  });

  it('read-only with a /data volume: pairs from the host with the printed line, runs a job through HAProxy, and keeps both across a restart', async () => {
    const [cpPort, lbPort] = [await freePort(), await freePort()];
    const publicUrl = `http://127.0.0.1:${lbPort}`;
    const name = `runt-image-test-${suffix}`;
    const volume = `runt-image-test-${suffix}`;
    volumes.push(volume);
    const lb = startHaproxy(lbPort, [cpPort]);
    await runContainer(name, [
      '--read-only',
      '-v',
      `${volume}:/data`,
      '-e',
      `RUNT_PORT=${cpPort}`,
      '-e',
      `RUNT_PUBLIC_URL=${publicUrl}`,
      '--stop-timeout',
      '30',
    ]);

    // The banner's connect line names the public URL (the load balancer) and works as printed.
    const connect = await connectLineOf(name);
    expect(connect.url).toBe(publicUrl);
    expect(await logsOf(name)).toContain('embedded PGlite in /data');
    const adminToken = (await dockerOk(['exec', name, 'cat', '/data/admin-token'])).trim();
    expect(adminToken).toMatch(/^rnt_adm_/);
    // HAProxy marked the replica down while it started; it is back in after two good checks.
    await eventually(
      async () => (await fetch(`${publicUrl}/readyz`)).ok,
      "the load balancer to pass the replica's /readyz",
    );
    const admin = new ControlPlaneClient({ url: publicUrl, token: adminToken });
    const configDir = join(mkdtempSync(join(tmpdir(), 'runt-image-ws-')), 'config');
    const paired = await runt(
      ['workstation', 'connect', connect.url, '--code', connect.code, '--name', 'image-box'],
      { RUNT_CONFIG_DIR: configDir },
    );
    expect(paired.exitCode, `${paired.stderr} (lb: ${lb.exitCode ?? 'running'})`).toBe(0);
    const workstationId = JSON.parse(readFileSync(join(configDir, 'workstation.json'), 'utf8'))
      .workstation_id as string;

    // A host agent on the process runtime links through HAProxy (WebSocket upgrade) and runs a job.
    const online = (what: string) => linked(admin, workstationId, what);
    let a = startAgent(configDir);
    await online(`the agent to link (output: ${a.output()})`);
    const { run: submitted } = await admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'echo from-the-image'],
    });
    expect(await terminal(admin, submitted.id)).toMatchObject({
      status: 'completed',
      exit_code: 0,
      workstation_id: workstationId,
    });
    expect(await stdoutOf(admin, submitted.id)).toBe('from-the-image\n');

    // Non-root, read-only root filesystem, only /data writable.
    expect(await dockerOk(['exec', name, 'id', '-u'])).toBe('10001');
    for (const path of ['/app/x', '/tmp/x', '/x'])
      expect((await docker(['exec', name, 'touch', path])).exitCode).not.toBe(0);
    expect((await docker(['exec', name, 'sh', '-c', 'touch /data/x && rm /data/x'])).exitCode).toBe(0);

    // Docker reports it healthy once its HEALTHCHECK (node fetching /healthz) has passed.
    await eventually(
      async () => (await dockerOk(['inspect', '--format', '{{.State.Health.Status}}', name])) === 'healthy',
      'a healthy container',
    );

    // docker stop: SIGTERM reaches node (PID 1), which closes everything and exits 0.
    a.agent.kill('SIGTERM');
    await a.agent;
    await dockerOk(['stop', name], 60_000);
    expect(await dockerOk(['inspect', '--format', '{{.State.ExitCode}}', name])).toBe('0');
    expect(await logsOf(name)).toContain('"msg":"stopped"');

    // Restarted on the same volume: the run, the workstation and its credential are still there.
    await dockerOk(['start', name]);
    await connectLineOf(name);
    const { run } = await eventually(
      () => admin.getRun(submitted.id),
      'the control plane back behind the load balancer',
    );
    expect(run).toMatchObject({ status: 'completed', exit_code: 0 });
    expect((await admin.listWorkstations()).workstations.map((w) => w.id)).toContain(workstationId);
    expect((await dockerOk(['exec', name, 'cat', '/data/admin-token'])).trim()).toBe(adminToken);
    a = startAgent(configDir);
    await online(`the agent to link again with its stored credential (output: ${a.output()})`);
    const { run: again } = await admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', 'echo after-restart'],
    });
    expect(await terminal(admin, again.id)).toMatchObject({ status: 'completed', exit_code: 0 });
    expect(await stdoutOf(admin, again.id)).toBe('after-restart\n');
  });

  describe('on Postgres', () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await createTestDatabase('postgres');
    });
    afterAll(async () => t?.dispose());

    it('uses DATABASE_URL with the admin token from the environment, read-only with a tmpfs /data', async () => {
      const port = await freePort();
      const adminToken = mintToken('admin');
      const name = `runt-image-pg-${suffix}`;
      await runContainer(name, [
        '--read-only',
        '--tmpfs',
        '/data:uid=10001,gid=10001,mode=0700',
        '-e',
        `RUNT_PORT=${port}`,
        '-e',
        `DATABASE_URL=${t.url}`,
        '-e',
        `RUNT_ADMIN_TOKEN=${adminToken}`,
      ]);
      const connect = await connectLineOf(name);
      expect(connect.url).toBe(`http://127.0.0.1:${port}`);
      const logs = await logsOf(name);
      expect(logs).toContain('(database: Postgres)');
      expect(logs).toContain('admin token: from RUNT_ADMIN_TOKEN');
      expect(logs).not.toContain(adminToken);
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(await ready.json()).toEqual({ ok: true, database: 'postgres' });
      const admin = new ControlPlaneClient({ url: `http://127.0.0.1:${port}`, token: adminToken });
      expect((await admin.mintPairingCode()).pairing.code).toMatch(/^[2-9A-Z]{4}-/);
      await dockerOk(['stop', name], 60_000);
      expect(await dockerOk(['inspect', '--format', '{{.State.ExitCode}}', name])).toBe('0');
    });

    it("two replicas behind HAProxy: killing the one that holds the agent's link moves the agent to the other, and runs go on", async () => {
      const adminToken = mintToken('admin');
      const [p1, p2, lbPort] = [await freePort(), await freePort(), await freePort()];
      const publicUrl = `http://127.0.0.1:${lbPort}`;
      void startHaproxy(lbPort, [p1, p2]);
      const replicas = [
        { id: 'cp1', port: p1, name: `runt-image-cp1-${suffix}` },
        { id: 'cp2', port: p2, name: `runt-image-cp2-${suffix}` },
      ];
      for (const r of replicas) {
        await runContainer(r.name, [
          '--read-only',
          '--tmpfs',
          '/data:uid=10001,gid=10001,mode=0700',
          '-e',
          `RUNT_PORT=${r.port}`,
          '-e',
          `DATABASE_URL=${t.url}`,
          '-e',
          `RUNT_ADMIN_TOKEN=${adminToken}`,
          '-e',
          `RUNT_REPLICA_ID=${r.id}`,
          // The database is shared with earlier tests: a live code is printed at start only
          // when no code was ever minted there, or when asked (issue 8, defect 9).
          '-e',
          'RUNT_PRINT_PAIRING_CODE=1',
          '-e',
          `RUNT_PUBLIC_URL=${publicUrl}`,
        ]);
      }
      const connect = await connectLineOf(replicas[0]!.name);
      await connectLineOf(replicas[1]!.name);
      expect(connect.url).toBe(publicUrl);
      await eventually(
        async () => (await fetch(`${publicUrl}/readyz`)).ok,
        'the load balancer to pass /readyz',
      );
      const admin = new ControlPlaneClient({ url: publicUrl, token: adminToken });
      const configDir = join(mkdtempSync(join(tmpdir(), 'runt-image-ws-')), 'config');
      const paired = await runt(
        ['workstation', 'connect', connect.url, '--code', connect.code, '--name', 'replicated-box'],
        { RUNT_CONFIG_DIR: configDir },
      );
      expect(paired.exitCode, paired.stderr).toBe(0);
      const workstationId = JSON.parse(readFileSync(join(configDir, 'workstation.json'), 'utf8'))
        .workstation_id as string;
      const a = startAgent(configDir);
      await linked(admin, workstationId, `the agent to link (output: ${a.output()})`);
      const holder = async () =>
        (
          await t.db.query<{ link_replica: string | null }>(
            'select link_replica from workstations where id = $1',
            [workstationId],
          )
        ).rows[0]?.link_replica ?? null;
      const first = await eventually(holder, 'a replica to hold the link');
      const { run: before } = await admin.submitRun({
        runtime: 'process',
        command: ['/bin/sh', '-c', 'echo before'],
      });
      expect(await terminal(admin, before.id)).toMatchObject({ status: 'completed', exit_code: 0 });

      // SIGKILL the replica holding the link: the agent reconnects through HAProxy to the other.
      const dead = replicas.find((r) => r.id === first)!;
      const survivor = replicas.find((r) => r.id !== first)!;
      await dockerOk(['kill', dead.name]);
      await eventually(
        async () => (await holder()) === survivor.id,
        `the link to move to ${survivor.id} (agent output: ${a.output()})`,
      );
      await linked(admin, workstationId, 'the agent to be online again');
      const { run: after } = await admin.submitRun({
        runtime: 'process',
        command: ['/bin/sh', '-c', 'echo after-failover'],
      });
      expect(await terminal(admin, after.id)).toMatchObject({
        status: 'completed',
        exit_code: 0,
        workstation_id: workstationId,
      });
      expect(await stdoutOf(admin, after.id)).toBe('after-failover\n');
      expect((await admin.getRun(before.id)).run).toMatchObject({ status: 'completed' });
      a.agent.kill('SIGTERM');
      await a.agent;
      await dockerOk(['stop', survivor.name], 60_000);
    });

    it('two replicas, no load balancer: runt-agent with RUNT_CLOUD_URL=cp1,cp2 fails over to the live one when its replica is killed', async () => {
      const adminToken = mintToken('admin');
      const [p1, p2] = [await freePort(), await freePort()];
      const replicas = [
        { id: 'cp1', url: `http://127.0.0.1:${p1}`, name: `runt-image-fo1-${suffix}` },
        { id: 'cp2', url: `http://127.0.0.1:${p2}`, name: `runt-image-fo2-${suffix}` },
      ];
      for (const [i, r] of replicas.entries()) {
        await runContainer(r.name, [
          '--read-only',
          '--tmpfs',
          '/data:uid=10001,gid=10001,mode=0700',
          '-e',
          `RUNT_PORT=${[p1, p2][i]}`,
          '-e',
          `DATABASE_URL=${t.url}`,
          '-e',
          `RUNT_ADMIN_TOKEN=${adminToken}`,
          '-e',
          `RUNT_REPLICA_ID=${r.id}`,
          // The database is shared with earlier tests: a live code is printed at start only
          // when no code was ever minted there, or when asked (issue 8, defect 9).
          '-e',
          'RUNT_PRINT_PAIRING_CODE=1',
        ]);
      }
      const connect = await connectLineOf(replicas[0]!.name);
      await connectLineOf(replicas[1]!.name);
      const configDir = join(mkdtempSync(join(tmpdir(), 'runt-image-fo-')), 'config');
      const paired = await runt(
        ['workstation', 'connect', connect.url, '--code', connect.code, '--name', 'failover-box'],
        { RUNT_CONFIG_DIR: configDir },
      );
      expect(paired.exitCode, paired.stderr).toBe(0);
      const cred = JSON.parse(readFileSync(join(configDir, 'workstation.json'), 'utf8')) as {
        workstation_id: string;
        token: string;
      };
      let out = '';
      const agent = execa('node', [AGENT_BIN, '--runtime', 'process'], {
        env: {
          ...process.env,
          RUNT_CLOUD_URL: replicas.map((r) => r.url).join(','),
          RUNT_CLOUD_TOKEN: cred.token,
          RUNT_CONFIG_DIR: configDir,
          RUNT_STATE_DIR: join(configDir, '..', 'state'),
          RUNT_ADMIN_TOKEN: undefined,
        },
        extendEnv: false,
        reject: false,
        stdin: 'ignore',
        all: true,
      });
      agent.all?.on('data', (d: Buffer) => (out += String(d)));
      children.push(agent);
      const holder = async () =>
        (
          await t.db.query<{ link_replica: string | null }>(
            'select link_replica from workstations where id = $1',
            [cred.workstation_id],
          )
        ).rows[0]?.link_replica ?? null;
      expect(await eventually(holder, 'the agent to link')).toBe('cp1');

      // cp1 dies: the agent's link and calls move to cp2, and runs submitted there complete.
      await dockerOk(['kill', replicas[0]!.name]);
      await eventually(
        async () => (await holder()) === 'cp2',
        `the link to move to cp2 (agent output: ${out})`,
      );
      const admin = new ControlPlaneClient({ url: replicas[1]!.url, token: adminToken });
      await linked(admin, cred.workstation_id, 'the agent online on cp2');
      const { run } = await admin.submitRun({
        runtime: 'process',
        command: ['/bin/sh', '-c', 'echo failed-over'],
      });
      expect(await terminal(admin, run.id)).toMatchObject({
        status: 'completed',
        exit_code: 0,
        workstation_id: cred.workstation_id,
      });
      expect(await stdoutOf(admin, run.id)).toBe('failed-over\n');
      agent.kill('SIGTERM');
      expect((await agent).exitCode, out).toBe(0);
    });
  });

  it('SIGTERM while the database is still opening ends it: PID 1 does not ignore it, docker needs no SIGKILL', async () => {
    const name = `runt-image-early-${suffix}`;
    const volume = `runt-image-early-${suffix}`;
    volumes.push(volume);
    await runContainer(name, ['-v', `${volume}:/data`, '-e', `RUNT_PORT=${await freePort()}`]);
    // Until node has loaded its modules and installed the startup handler, PID 1 ignores SIGTERM
    // (the kernel's rule for init; node's own low-level SIGTERM hook only re-raises it). The
    // handler is in place once the database directory appears.
    await eventually(
      async () => (await docker(['exec', name, 'test', '-d', '/data/db'])).exitCode === 0,
      'the database to start opening',
    );
    await dockerOk(['stop', '--time', '120', name], 180_000);
    const listening = (await logsOf(name)).includes('"msg":"listening"');
    // 143: the startup handler (128 + SIGTERM); 0: it was already up and closed gracefully.
    // Never 137, which would mean SIGTERM was ignored by PID 1 and docker had to SIGKILL it.
    expect(await dockerOk(['inspect', '--format', '{{.State.ExitCode}}', name])).toBe(
      listening ? '0' : '143',
    );
    // A first start cut short leaves a database the next start opens.
    await dockerOk(['start', name]);
    await connectLineOf(name);
  });
});

describe('deploy/ files', () => {
  it('haproxy.cfg passes haproxy -c', async () => {
    const r = await execa('haproxy', ['-c', '-f', join(REPO, 'deploy/haproxy.cfg')], {
      reject: false,
      all: true,
    });
    expect(r.exitCode, String(r.all)).toBe(0);
    expect(String(r.all)).toContain('Configuration file is valid');
    expect(String(r.all)).not.toContain('[ALERT]');
  });

  it('compose.yaml passes docker-compose config: Postgres, three replicas, HAProxy; required secrets are enforced', async () => {
    const compose = (env: Record<string, string>) =>
      execa('docker-compose', ['-f', join(REPO, 'deploy/compose.yaml'), 'config'], {
        env: { DOCKER_HOST, PATH: process.env.PATH ?? '', ...env },
        extendEnv: false,
        reject: false,
        all: true,
      });
    const key = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
    const ok = await compose({
      POSTGRES_PASSWORD: 'pw',
      RUNT_ADMIN_TOKEN: 'rnt_adm_x',
      RUNT_SECRET_KEY: key,
    });
    expect(ok.exitCode, String(ok.all)).toBe(0);
    const config = String(ok.stdout);
    for (const service of ['postgres', 'cp1', 'cp2', 'cp3', 'lb'])
      expect(config).toMatch(new RegExp(`^  ${service}:$`, 'm'));
    expect(config.match(/DATABASE_URL: postgres:\/\/runt:pw@postgres:5432\/runt/g)).toHaveLength(3);
    expect(config.match(/read_only: true/g)?.length).toBeGreaterThanOrEqual(4);
    // every replica gets the same secret key, or one could not open what another sealed
    expect(config.match(new RegExp(`RUNT_SECRET_KEY: ${key.replace(/[+/=]/g, '\\$&')}`, 'g'))).toHaveLength(
      3,
    );
    const missing = await compose({ POSTGRES_PASSWORD: 'pw', RUNT_SECRET_KEY: key });
    expect(missing.exitCode).not.toBe(0);
    expect(String(missing.all)).toContain('set RUNT_ADMIN_TOKEN');
    const noKey = await compose({ POSTGRES_PASSWORD: 'pw', RUNT_ADMIN_TOKEN: 'rnt_adm_x' });
    expect(noKey.exitCode).not.toBe(0);
    expect(String(noKey.all)).toContain('set RUNT_SECRET_KEY');
  });
});
