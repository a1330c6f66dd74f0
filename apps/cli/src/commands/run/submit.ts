import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { Command, Flags } from '@oclif/core';
import { c as createTar } from 'tar';
import {
  envNameSchema,
  retryOnSchema,
  type RetryOn,
  type Run,
  type SubmitEnvValue,
  type SubmitRunRequest,
} from '@runt/protocol';
import { adminClient, adminFlags } from '../../config.js';
import { CliError } from '../../errors.js';
import { parseDuration } from '../../duration.js';
import { adminToken, followRunEvents, printLogEvent, reportRunEnd } from './logs.js';
import { watchPending } from '../../pending-notice.js';
import { resolveWorkstationId } from '../../workstation-ref.js';

export default class RunSubmit extends Command {
  static override summary =
    'Submit a run; prints its id (--follow streams its output and exits with its exit code).';
  static override description =
    'Everything after -- is the command. The admin token comes from RUNT_ADMIN_TOKEN or --token-file.';
  static override examples = [
    '<%= config.bin %> run submit --runtime process -- /bin/sh -c "echo hello"',
    "<%= config.bin %> run submit --runtime docker --image busybox:latest --env GREETING=hi --follow -- sh -c 'echo $GREETING'",
    'API_TOKEN=… <%= config.bin %> run submit --runtime process --secret-env API_TOKEN -- sh -c \'deploy --token "$API_TOKEN"\'',
    '<%= config.bin %> run submit --runtime process --bundle ./src --ready-when "listening on" -- ./serve.sh',
  ];
  static override strict = false;
  static override enableJsonFlag = true;
  static override flags = {
    ...adminFlags,
    runtime: Flags.string({
      description: 'runtime that runs it (process, docker, podman, …)',
      required: true,
    }),
    image: Flags.string({ description: 'image (image-based runtimes)' }),
    env: Flags.string({ description: 'environment variable K=V (repeatable)', multiple: true }),
    'secret-env': Flags.string({
      description:
        'secret environment variable K=V, or K alone to take the value from this shell’s environment (keeps it out of argv and history); stored encrypted, shown as *** and masked in the output (repeatable)',
      multiple: true,
    }),
    workdir: Flags.string({ description: 'working directory inside the instance' }),
    'ready-when': Flags.string({ description: 'report running when this line first appears in the output' }),
    workstation: Flags.string({ description: 'place it on this workstation (its name or id)' }),
    label: Flags.string({
      description: 'place it on a workstation with label k=v (repeatable)',
      multiple: true,
    }),
    timeout: Flags.string({
      description: 'stop it and fail it with timeout after this long running (90s, 10m, 2h)',
    }),
    'queue-timeout': Flags.string({
      description: 'end it blocked (unplaceable) if not placed within this long (90s, 10m, 2h)',
    }),
    'max-attempts': Flags.integer({
      description: 'attempts in all, retries included (default 3)',
      min: 1,
      max: 20,
    }),
    retry: Flags.string({
      description:
        'retry a failed attempt automatically when it failed this way: nonzero-exit, runner-lost, timeout or an exit code (comma-separated or repeated)',
      multiple: true,
    }),
    'retry-backoff': Flags.string({
      description:
        'wait before the first retry (doubled for each further one, at most 5m; default 5s, 0 for none)',
    }),
    bundle: Flags.string({
      description: 'directory packed (tar.gz) and unpacked into the working directory',
    }),
    'idempotency-key': Flags.string({ description: 'the same key within 24 h returns the same run' }),
    follow: Flags.boolean({ char: 'f', description: "stream the output and exit with the run's exit code" }),
  };

  async run(): Promise<{ run: Run }> {
    const { flags, argv } = await this.parse(RunSubmit);
    const command = (argv as string[]).filter((a, i) => !(i === 0 && a === '--'));
    const client = await adminClient(flags);
    const body: SubmitRunRequest = {
      runtime: flags.runtime,
      command,
      env: { ...pairs(flags.env, 'env'), ...secretEnv(flags['secret-env']) },
      ...(flags.image ? { image: flags.image } : {}),
      ...(flags.workdir ? { workdir: flags.workdir } : {}),
      ...(flags['ready-when'] ? { ready_when: { log_line: flags['ready-when'] } } : {}),
      placement: {
        ...(flags.workstation
          ? { workstation_id: await resolveWorkstationId(client, flags.workstation) }
          : {}),
        ...(flags.label ? { labels: pairs(flags.label, 'label') } : {}),
      },
      ...(flags['max-attempts'] ? { max_attempts: flags['max-attempts'] } : {}),
      ...retryPolicy(flags.retry, flags['retry-backoff']),
      ...(flags.timeout ? { timeout_s: parseDuration(flags.timeout, 'timeout') } : {}),
      ...(flags['queue-timeout']
        ? { queue_timeout_s: parseDuration(flags['queue-timeout'], 'queue-timeout') }
        : {}),
      ...(flags['idempotency-key'] ? { idempotency_key: flags['idempotency-key'] } : {}),
    };
    if (flags.bundle) {
      const bytes = await packDirectory(flags.bundle);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      await client.uploadBundle(sha256, bytes);
      body.bundle = { sha256 };
    }
    const { run } = await client.submitRun(body);
    if (!flags.follow) {
      if (!this.jsonEnabled()) this.log(run.id);
      return { run };
    }
    if (!this.jsonEnabled()) process.stderr.write(`${run.id}\n`);
    const stopWatching = this.jsonEnabled()
      ? () => {}
      : watchPending(client, run.id, (line) => process.stderr.write(`${line}\n`));
    try {
      await followRunEvents(client, run.id, {
        follow: true,
        token: await adminToken(flags),
        onEvent: this.jsonEnabled() ? () => {} : printLogEvent,
      });
    } finally {
      stopWatching();
    }
    const { run: done } = await client.getRun(run.id);
    reportRunEnd(done, this.jsonEnabled());
    return { run: done };
  }
}

/** `--retry` and `--retry-backoff` as the run's `retry` policy (none without `--retry`). */
function retryPolicy(on: string[] | undefined, backoff: string | undefined): Pick<SubmitRunRequest, 'retry'> {
  if (!on) {
    if (backoff !== undefined) throw new CliError('--retry-backoff needs --retry (which failures to retry)');
    return {};
  }
  const kinds: RetryOn[] = on
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean)
    .map((v) => {
      const parsed = retryOnSchema.safeParse(/^-?\d+$/.test(v) ? Number(v) : v);
      if (!parsed.success)
        throw new CliError(
          `invalid --retry "${v}": use nonzero-exit, runner-lost, timeout or a non-zero exit code`,
        );
      return parsed.data;
    });
  return {
    retry: {
      on: kinds,
      ...(backoff !== undefined
        ? { backoff: { initial_s: parseDuration(backoff, 'retry-backoff', 0) } }
        : {}),
    },
  };
}

/**
 * `--secret-env NAME=value`, or `NAME` alone with the value from the CLI's own environment (as
 * `docker run -e NAME` does), as secret env entries.
 */
function secretEnv(list: string[] | undefined): Record<string, SubmitEnvValue> {
  const out: Record<string, SubmitEnvValue> = {};
  for (const p of list ?? []) {
    const eq = p.indexOf('=');
    const name = eq === -1 ? p : p.slice(0, eq);
    if (!envNameSchema.safeParse(name).success)
      throw new CliError(`invalid --secret-env "${name}": use NAME=VALUE or NAME (letters, digits and _)`);
    const value = eq === -1 ? process.env[name] : p.slice(eq + 1);
    if (value === undefined)
      throw new CliError(`--secret-env ${name}: ${name} is not set in this environment (or use NAME=VALUE)`);
    out[name] = { value, secret: true };
  }
  return out;
}

function pairs(list: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of list ?? []) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new CliError(`invalid --${what} "${p}": use KEY=VALUE`);
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

async function packDirectory(dir: string): Promise<Uint8Array> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw new CliError(`--bundle must be a directory: ${dir}`);
  const chunks: Buffer[] = [];
  for await (const c of createTar({ cwd: dir, gzip: true, portable: true }, ['.']) as AsyncIterable<Buffer>)
    chunks.push(Buffer.from(c));
  return new Uint8Array(Buffer.concat(chunks));
}
