import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logBytes } from '@runt/protocol';
import { TEST_BACKENDS } from '@runt/sql/testing';
import { execa } from 'execa';
import { RUNT_BIN } from './cli.js';
import { allEvents, startRunsHarness, terminal, type RunsHarness } from './runs-harness.js';

// Issue 8, defect 2: a NUL byte (or any bytes that are not UTF-8) in output used to wedge the run
// (the stored event was refused, the agent retried forever). Output is bytes: a real agent on the
// process runtime sends what is not storable text as base64 events, and every reader gets the
// exact bytes back — the events endpoint (through logBytes) and `runt run logs`.

describe.each(TEST_BACKENDS)('output bytes round-trip on %s', (backend) => {
  let h: RunsHarness;
  const dir = mkdtempSync(join(tmpdir(), 'runt-bytes-'));

  beforeAll(async () => {
    h = await startRunsHarness(backend);
    await h.startAgent(`bytes-${backend}`, ['--runtime', 'process', '--max-runs', '4']);
  }, 120_000);
  afterAll(async () => h?.close());

  const stdoutBytes = async (id: string) =>
    Buffer.concat(
      (await allEvents(h.admin, id))
        .filter((e) => e.type === 'log' && e.payload.stream === 'stdout')
        .map((e) => logBytes(e.payload)),
    );

  /** Runs `cat <file of bytes>` and returns the run and what the events give back. */
  const roundTrip = async (bytes: Uint8Array, name: string) => {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    const { run } = await h.admin.submitRun({ runtime: 'process', command: ['/bin/cat', file] });
    return { run: await terminal(h.admin, run.id, 120_000), got: await stdoutBytes(run.id) };
  };

  it("printf 'a\\000b\\n' completes and reads back exactly, in the API and in runt run logs", async () => {
    const { run } = await h.admin.submitRun({
      runtime: 'process',
      command: ['/bin/sh', '-c', "printf 'a\\000b\\n'; printf 'x\\000' >&2; exit 3"],
    });
    expect(await terminal(h.admin, run.id, 120_000)).toMatchObject({ status: 'failed', exit_code: 3 });
    expect((await stdoutBytes(run.id)).equals(Buffer.from('a\0b\n', 'latin1'))).toBe(true);
    const logs = await execa('node', [RUNT_BIN, 'run', 'logs', run.id], {
      env: {
        ...process.env,
        RUNT_CLOUD_URL: undefined,
        RUNT_CLOUD_TOKEN: undefined,
        DEBUG: undefined,
        ...h.adminEnv,
      },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      encoding: 'buffer',
      stripFinalNewline: false,
      timeout: 60_000,
    });
    expect(logs.exitCode).toBe(0);
    expect(Buffer.from(logs.stdout).equals(Buffer.from('a\0b\n', 'latin1'))).toBe(true);
    expect(Buffer.from(logs.stderr).equals(Buffer.from('x\0', 'latin1'))).toBe(true);
  }, 180_000);

  it('64 KiB of random bytes complete and read back exactly', async () => {
    const bytes = Buffer.from(Array.from({ length: 65_536 }, (_, i) => (i * 7919 + (i >> 3) * 31) & 0xff));
    const { run, got } = await roundTrip(bytes, 'random.bin');
    expect(run).toMatchObject({ status: 'completed', exit_code: 0 });
    expect(got.equals(bytes)).toBe(true);
  }, 180_000);

  it('property: any byte sequence a workload prints is read back exactly', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(s, 'utf8')),
        ),
        async (bytes) => {
          const { run, got } = await roundTrip(bytes, `case-${n++}.bin`);
          expect(run.status).toBe('completed');
          expect(got.equals(Buffer.from(bytes))).toBe(true);
        },
      ),
      { seed: 8_002, numRuns: 12 },
    );
  }, 300_000);
});
