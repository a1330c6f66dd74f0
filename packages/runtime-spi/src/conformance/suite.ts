import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { START_GRACE_MS } from '../wait-for-start.js';
import {
  MANAGED_LABEL,
  RUNTIME_SPECIFICATION_VERSION,
  type Instance,
  type InstanceSpec,
  type Runtime,
} from '../runtime.js';
import {
  collectExec,
  collectLogs,
  expectRuntimeError,
  waitForLogText,
  waitForTerminalText,
} from './helpers.js';
import { runInChildProcess, type ReattachInNewProcess } from './reattach-child.js';

export interface ConformanceOptions {
  /** Suite title, e.g. 'docker'. */
  name: string;
  /** A FRESH adapter instance each call (the re-attach tests call it more than once). */
  createRuntime(): Runtime | Promise<Runtime>;
  /** Image with busybox /bin/sh, echo, sleep, cat, env, pwd, trap; undefined for runtimes without images. */
  image?: string;
  /** A ref that cannot exist locally or be pulled (default 'runt-test/does-not-exist:0'). */
  missingImage?: string;
  /** How a child node process builds the adapter, to re-attach from a new OS process. */
  reattachInNewProcess?: ReattachInNewProcess;
  /** Per-test timeout (default 60 000). */
  timeoutMs?: number;
}

/** Keeps a workload up until SIGTERM, and ends promptly on it everywhere (also as PID 1 in a container). */
const IDLE = "trap 'exit 0' TERM; sleep 300 & wait";
/** The workdir every conformance workload uses: it exists on hosts and in busybox images. */
const WORKDIR = '/tmp';

/**
 * Registers vitest `describe`/`it` blocks that check an adapter against the Runtime contract:
 * lifecycle, labels and list, logs (follow), exit codes, graceful stop and kill escalation,
 * exec, terminal, env and workdir, missing images and instances, abort signals,
 * ensureImage single-flight and re-attaching from a fresh adapter (optionally from a new
 * process). Workloads are POSIX `sh -c` scripts limited to echo, sleep, exit, cat, env, pwd,
 * trap, `&` and wait. Every instance carries `runt.conformance=<random>` and is removed
 * after the suite.
 * @example
 * // docker.test.ts
 * describeRuntimeConformance({ name: 'docker', createRuntime: () => createDockerRuntime(), image: 'busybox:1.36' });
 */
export function describeRuntimeConformance(opts: ConformanceOptions): void {
  const timeout = opts.timeoutMs ?? 60_000;
  const missingImage = opts.missingImage ?? 'runt-test/does-not-exist:0';
  const runId = randomBytes(4).toString('hex');
  const suiteLabels = { 'runt.conformance': runId };
  const runtimes: Runtime[] = [];
  let runtime: Runtime;
  let counter = 0;

  const fresh = async (): Promise<Runtime> => {
    const created = await opts.createRuntime();
    runtimes.push(created);
    return created;
  };

  /** A spec for one test: unique name, the suite label plus a per-test label, sh -c script. */
  const spec = (test: string, script: string, extra: Partial<InstanceSpec> = {}): InstanceSpec => ({
    name: `runt-conf-${runId}-${++counter}`,
    command: ['/bin/sh', '-c', script],
    ...(opts.image === undefined ? {} : { image: opts.image }),
    ...extra,
    labels: { ...suiteLabels, 'runt.conformance.test': test, ...extra.labels },
  });

  const run = async (
    test: string,
    script: string,
    extra: Partial<InstanceSpec> = {},
    rt = runtime,
  ): Promise<Instance> => {
    const created = await rt.create(spec(test, script, extra));
    return rt.start(created.id);
  };

  describe(`runtime conformance: ${opts.name}`, () => {
    beforeAll(async () => {
      runtime = await fresh();
      if (opts.image !== undefined) await runtime.ensureImage(opts.image);
    }, timeout);

    afterAll(async () => {
      const cleaner = await opts.createRuntime();
      runtimes.push(cleaner);
      const leftovers = await cleaner.list({ labels: suiteLabels }).catch(() => []);
      await Promise.all(
        leftovers.map(async (instance) => {
          await cleaner.stop(instance.id, { timeoutMs: 1000 }).catch(() => {});
          await cleaner.remove(instance.id).catch(() => {});
        }),
      );
      await Promise.all(runtimes.map((rt) => rt.close().catch(() => {})));
    }, timeout);

    it(
      'declares its specification version and is available',
      async () => {
        expect(runtime.specificationVersion).toBe(RUNTIME_SPECIFICATION_VERSION);
        expect(typeof runtime.name).toBe('string');
        expect(runtime.name.length).toBeGreaterThan(0);
        const availability = await runtime.available();
        expect(availability.available, availability.reason).toBe(true);
      },
      timeout,
    );

    it(
      'runs the lifecycle: create, inspect, list, start, stop, remove',
      async () => {
        const test = 'lifecycle';
        const s = spec(test, IDLE, { labels: { 'caller.label': 'kept' } });
        const created = await runtime.create(s);
        expect(created.name).toBe(s.name);
        expect(created.state).toBe('created');
        expect(created.runtime).toBe(runtime.name);
        expect(created.labels).toMatchObject({
          [MANAGED_LABEL]: 'true',
          'caller.label': 'kept',
          ...suiteLabels,
        });

        const inspected = await runtime.inspect(created.id);
        expect(inspected?.id).toBe(created.id);
        expect(inspected?.state).toBe('created');

        const listed = await runtime.list({ labels: { 'runt.conformance.test': test, ...suiteLabels } });
        expect(listed.map((i) => i.id)).toEqual([created.id]);
        const managed = await runtime.list({ labels: { [MANAGED_LABEL]: 'true', ...suiteLabels } });
        expect(managed.map((i) => i.id)).toContain(created.id);
        const none = await runtime.list({ labels: { ...suiteLabels, 'caller.label': 'other' } });
        expect(none).toEqual([]);

        const started = await runtime.start(created.id);
        expect(started.state).toBe('running');
        expect((await runtime.inspect(created.id))?.state).toBe('running');

        await runtime.stop(created.id, { timeoutMs: 10_000 });
        const stopped = await runtime.inspect(created.id);
        expect(stopped?.state).toBe('exited');
        expect(typeof stopped?.exitCode).toBe('number');
        await runtime.stop(created.id, { timeoutMs: 1000 }); // stopping a stopped instance is a no-op

        await runtime.remove(created.id);
        expect(await runtime.inspect(created.id)).toBeUndefined();
        expect(await runtime.list({ labels: { 'runt.conformance.test': test, ...suiteLabels } })).toEqual([]);
      },
      timeout,
    );

    it(
      'refuses a second instance with the same name (instance-exists)',
      async () => {
        const s = spec('duplicate', 'exit 0');
        await runtime.create(s);
        await expectRuntimeError(runtime.create({ ...s }), 'instance-exists');
      },
      timeout,
    );

    it(
      'reports exit codes through wait and inspect',
      async () => {
        const failing = await run('exit-code', 'exit 3');
        expect(await runtime.wait(failing.id)).toMatchObject({ exitCode: 3 });
        const inspected = await runtime.inspect(failing.id);
        expect(inspected).toMatchObject({ state: 'exited', exitCode: 3 });

        const ok = await run('exit-code', 'echo fine');
        expect((await runtime.wait(ok.id)).exitCode).toBe(0);
      },
      timeout,
    );

    it(
      'keeps stdout and stderr apart in logs, with timestamps',
      async () => {
        const inst = await run('logs', 'echo to-out; echo to-err >&2');
        await runtime.wait(inst.id);
        const logs = await collectLogs(runtime.logs(inst.id));
        expect(logs.stdout).toContain('to-out');
        expect(logs.stdout).not.toContain('to-err');
        expect(logs.stderr).toContain('to-err');
        for (const chunk of logs.chunks) expect(Number.isNaN(Date.parse(chunk.at))).toBe(false);
      },
      timeout,
    );

    it(
      'follows logs until the instance exits',
      async () => {
        const inst = await run('logs-follow', 'echo first; sleep 1; echo second');
        const logs = await collectLogs(runtime.logs(inst.id, { follow: true }));
        expect(logs.stdout).toContain('first');
        expect(logs.stdout).toContain('second');
        expect((await runtime.inspect(inst.id))?.state).toBe('exited');
      },
      timeout,
    );

    it(
      'passes env and workdir to the workload',
      async () => {
        const inst = await run('env-workdir', 'echo "var=$RUNT_CONFORMANCE_VAR"; pwd', {
          env: { RUNT_CONFORMANCE_VAR: 'hello world' },
          workdir: WORKDIR,
        });
        await runtime.wait(inst.id);
        const { stdout } = await collectLogs(runtime.logs(inst.id));
        expect(stdout).toContain('var=hello world');
        expect(stdout.split('\n')).toContain(WORKDIR);
      },
      timeout,
    );

    it(
      'stops gracefully: SIGTERM first, and the workload may exit on its own terms',
      async () => {
        const inst = await run(
          'stop-graceful',
          "trap 'echo got-term; exit 0' TERM; echo ready; sleep 300 & wait",
        );
        await waitForLogText(runtime, inst.id, 'ready');
        await runtime.stop(inst.id, { timeoutMs: 20_000 });
        expect(await runtime.wait(inst.id)).toMatchObject({ exitCode: 0 });
        const { stdout } = await collectLogs(runtime.logs(inst.id));
        expect(stdout).toContain('got-term');
      },
      timeout,
    );

    it(
      'kills a workload that ignores SIGTERM once the timeout passes',
      async () => {
        const inst = await run('stop-escalation', "trap '' TERM; echo ready; sleep 300");
        await waitForLogText(runtime, inst.id, 'ready');
        await runtime.stop(inst.id, { timeoutMs: 1000 });
        expect((await runtime.inspect(inst.id))?.state).toBe('exited');
        expect((await runtime.wait(inst.id)).exitCode).toBe(137);
      },
      timeout,
    );

    it(
      'execs commands with streamed output, env, workdir, stdin and exit code',
      async () => {
        const inst = await run('exec', IDLE, {
          env: { RUNT_CONFORMANCE_VAR: 'from-spec' },
          workdir: WORKDIR,
        });
        const result = await collectExec(
          await runtime.exec(
            inst.id,
            [
              '/bin/sh',
              '-c',
              'echo "out:$RUNT_CONFORMANCE_VAR:$RUNT_EXEC_VAR"; echo err-line >&2; pwd; exit 4',
            ],
            {
              env: { RUNT_EXEC_VAR: 'from-exec' },
            },
          ),
        );
        expect(result.stdout).toContain('out:from-spec:from-exec');
        expect(result.stdout.split('\n')).toContain(WORKDIR);
        expect(result.stderr).toContain('err-line');
        expect(result.exitCode).toBe(4);

        const piped = await collectExec(await runtime.exec(inst.id, ['cat'], { stdin: 'piped-input\n' }));
        expect(piped.stdout).toBe('piped-input\n');
        expect(piped.exitCode).toBe(0);
        expect((await runtime.inspect(inst.id))?.state).toBe('running');
      },
      timeout,
    );

    it(
      'opens an interactive terminal in the instance env and workdir',
      async () => {
        const inst = await run('terminal', IDLE, {
          env: { RUNT_CONFORMANCE_TERM: 'term-ok' },
          workdir: WORKDIR,
        });
        const session = await runtime.terminal(inst.id, { cols: 100, rows: 30 });
        const sink = { output: '' };
        session.onData((data) => {
          sink.output += data;
        });
        // The tty echoes what we type; the quotes make the echo differ from the command's output.
        session.write('echo "marker:"$RUNT_CONFORMANCE_TERM "dir:"$PWD\r');
        await waitForTerminalText(session, `marker:term-ok dir:${WORKDIR}`, sink);
        session.resize(120, 40);
        session.write('exit 7\r');
        expect((await session.exit).exitCode).toBe(7);
        session.close();
      },
      timeout,
    );

    it(
      'rejects calls for a missing instance with instance-not-found',
      async () => {
        const id = `missing-${runId}-instance`;
        expect(await runtime.inspect(id)).toBeUndefined();
        await expectRuntimeError(runtime.start(id), 'instance-not-found');
        await expectRuntimeError(runtime.stop(id, { timeoutMs: 1000 }), 'instance-not-found');
        await expectRuntimeError(runtime.remove(id), 'instance-not-found');
        await expectRuntimeError(runtime.wait(id), 'instance-not-found');
        await expectRuntimeError(runtime.exec(id, ['/bin/sh', '-c', 'true']), 'instance-not-found');
        await expectRuntimeError(runtime.terminal(id), 'instance-not-found');
        await expectRuntimeError(collectLogs(runtime.logs(id)), 'instance-not-found');
      },
      timeout,
    );

    if (opts.image !== undefined) {
      it(
        'fails with image-unavailable for an image that cannot be found',
        async () => {
          await expectRuntimeError(runtime.ensureImage(missingImage), 'image-unavailable');
          await expectRuntimeError(
            runtime.create(spec('missing-image', 'exit 0', { image: missingImage })),
            'image-unavailable',
          );
          expect(
            await runtime.list({ labels: { ...suiteLabels, 'runt.conformance.test': 'missing-image' } }),
          ).toEqual([]);
        },
        timeout,
      );
    }

    it(
      'ensureImage is idempotent and single-flight; a caller giving up does not cancel it for others',
      async () => {
        const ref = opts.image ?? 'runt-conformance/unused:0';
        const giveUp = new AbortController();
        const abandoned = runtime.ensureImage(ref, { signal: giveUp.signal });
        const others = [runtime.ensureImage(ref), runtime.ensureImage(ref)];
        giveUp.abort();
        await expectRuntimeError(abandoned, 'aborted');
        const [a, b] = await Promise.all(others);
        expect(a?.ref).toBe(ref);
        expect(b?.id).toBe(a?.id);
        expect((await runtime.ensureImage(ref)).id).toBe(a?.id);
      },
      timeout,
    );

    it(
      'rejects calls with an aborted signal and stops waiting when a signal aborts',
      async () => {
        const aborted = AbortSignal.abort();
        await expectRuntimeError(runtime.create(spec('abort', 'exit 0'), { signal: aborted }), 'aborted');
        expect(await runtime.list({ labels: { ...suiteLabels, 'runt.conformance.test': 'abort' } })).toEqual(
          [],
        );
        await expectRuntimeError(runtime.list({ labels: suiteLabels, signal: aborted }), 'aborted');

        const inst = await run('abort-running', `echo tick; ${IDLE}`);
        await expectRuntimeError(runtime.inspect(inst.id, { signal: aborted }), 'aborted');
        await expectRuntimeError(runtime.stop(inst.id, { signal: aborted }), 'aborted');
        await expectRuntimeError(
          runtime.exec(inst.id, ['/bin/sh', '-c', 'true'], { signal: aborted }),
          'aborted',
        );

        const waiting = new AbortController();
        const waited = runtime.wait(inst.id, { signal: waiting.signal });
        setTimeout(() => waiting.abort(), 200);
        await expectRuntimeError(waited, 'aborted');

        const following = new AbortController();
        const followed = (async () => {
          let seen = '';
          for await (const chunk of runtime.logs(inst.id, { follow: true, signal: following.signal })) {
            seen += chunk.data;
            if (seen.includes('tick')) following.abort();
          }
        })();
        await expectRuntimeError(followed, 'aborted');
        expect((await runtime.inspect(inst.id))?.state).toBe('running');
      },
      timeout,
    );

    it(
      're-attaches from a fresh adapter instance: list, inspect, logs and wait',
      async () => {
        const first = await fresh();
        const inst = await run('reattach', 'echo attached-output; sleep 1; exit 5', {}, first);
        await first.close();

        const second = await fresh();
        const found = await second.list({ labels: { ...suiteLabels, 'runt.conformance.test': 'reattach' } });
        expect(found.map((i) => i.id)).toEqual([inst.id]);
        expect((await second.inspect(inst.id))?.name).toBe(inst.name);
        expect(await second.wait(inst.id)).toMatchObject({ exitCode: 5 });
        expect((await collectLogs(second.logs(inst.id))).stdout).toContain('attached-output');
        await second.remove(inst.id);
      },
      timeout,
    );

    it(
      're-adoption ends in a known state within a bound: a never-started instance makes wait reject with not-started',
      async () => {
        const created = await runtime.create(spec('never-started', 'exit 0'));
        const second = await fresh();
        const began = Date.now();
        await expectRuntimeError(second.wait(created.id), 'not-started');
        // Bounded by the start grace (plus the time one look at the instance takes), never forever.
        expect(Date.now() - began).toBeLessThan(START_GRACE_MS + 15_000);
        expect((await second.inspect(created.id))?.state).toBe('created');
      },
      timeout,
    );

    it(
      're-adoption ends in a known state: a fresh adapter waiting on a workload killed from outside gets its exit',
      async () => {
        const first = await fresh();
        const inst = await run('killed-outside', `echo up; ${IDLE}`, {}, first);
        await waitForLogText(first, inst.id, 'up');
        await first.close();
        const second = await fresh();
        const waited = second.wait(inst.id);
        await second.stop(inst.id, { timeoutMs: 1000 });
        expect(typeof (await waited).exitCode).toBe('number');
        expect((await second.inspect(inst.id))?.state).toBe('exited');
      },
      timeout,
    );

    const how = opts.reattachInNewProcess;
    if (how) {
      it(
        're-attaches from a new process: an instance outlives the process that started it',
        async () => {
          const labels = { ...suiteLabels, 'runt.conformance.test': 'reattach-process' };
          const started = await runInChildProcess<{ id: string; state: string }>(
            how,
            'create-start',
            { spec: spec('reattach-process', 'echo from-child; sleep 2; exit 6') },
            timeout,
          );
          expect(started.state).toBe('running');

          const found = await runtime.list({ labels });
          expect(found.map((i) => i.id)).toEqual([started.id]);

          const observed = await runInChildProcess<{
            listed: string[];
            inspected: Instance;
            exit: { exitCode: number };
            stdout: string;
          }>(how, 'observe', { id: started.id, labels }, timeout);
          expect(observed.listed).toEqual([started.id]);
          expect(observed.inspected.id).toBe(started.id);
          expect(observed.exit.exitCode).toBe(6);
          expect(observed.stdout).toContain('from-child');
          expect(await runtime.wait(started.id)).toMatchObject({ exitCode: 6 });
        },
        timeout,
      );
    }
  });
}
