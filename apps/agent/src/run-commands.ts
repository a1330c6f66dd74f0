import type { Logger } from 'pino';
import { isApiError, type ControlPlaneClient, type RunCommand } from '@runt/protocol';
import type { Runtime } from '@runt/runtime-spi';
import type { RunEventLog } from './run-event-log.js';
import type { RunReporter } from './run-reporter.js';

export interface RunCommandsOptions {
  client: Pick<ControlPlaneClient, 'listCommands' | 'ackCommand' | 'commandStatus'>;
  /** Carries each command's status report through transient failures; see {@link RunReporter.retry}. */
  reporter: Pick<RunReporter, 'retry'>;
  runtime: Runtime;
  runId: string;
  instanceId: string;
  fencingToken: number;
  events: RunEventLog;
  /** Seq of the last command handled (from the state file after a restart). */
  afterSeq: number;
  /** Called after each command with the new last seq (to persist it). */
  onSeq: (seq: number) => Promise<void> | void;
  /** Aborted when the run is dropped: the loop ends, a running command is aborted. */
  work: AbortSignal;
  /** Aborted when the run is cancelled: no new command starts. */
  cancel: { readonly aborted: boolean };
  /** How long to wait between listings without a wake-up. */
  pollMs: () => number;
  /** Skip the first listing (the claim said none were waiting and the link delivers wake-ups). */
  skipFirst: boolean;
  /** A listing was refused with 409: the run is not ours any more. */
  onRefused: (reason: string) => void;
  logger: Logger;
}

/**
 * The commands (execs) queued into a live run: lists them after the last seq handled (at once
 * when woken, else every `pollMs`), acks each pending one, runs it in the instance, streams its
 * output as `log` events with its `command_id`, and reports its end with a `command_status`
 * event and a fenced status call. `run()` ends after `stop()` or when `work` aborts.
 *
 * @example
 * const commands = new RunCommands({ ...deps, instanceId, afterSeq: 0, skipFirst: false });
 * const loop = commands.run();
 * link.on('command', () => commands.wake());
 * commands.stop(); await loop;
 */
export class RunCommands {
  #seq: number;
  #pending = false;
  #stopped = false;
  #wake: (() => void) | undefined;

  constructor(private readonly opts: RunCommandsOptions) {
    this.#seq = opts.afterSeq;
  }

  /** A command was queued (link wake-up): look now instead of at the next poll. */
  wake(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /** No further listing; `run()` returns after the command in flight. */
  stop(): void {
    this.#stopped = true;
    this.#wake?.();
  }

  async run(): Promise<void> {
    const { work, cancel } = this.opts;
    let skip = this.opts.skipFirst && !this.#pending;
    while (!this.#stopped && !work.aborted) {
      if (skip) skip = false;
      else if (!cancel.aborted) {
        this.#pending = false;
        let commands: RunCommand[] = [];
        try {
          commands = (await this.opts.client.listCommands(this.opts.runId, this.#seq)).commands;
        } catch (e) {
          if (isApiError(e) && e.status === 409) return this.opts.onRefused(`commands refused: ${e.message}`);
          this.opts.logger.debug({ run_id: this.opts.runId, err: e }, 'listing commands failed');
        }
        for (const command of commands.sort((a, b) => a.seq - b.seq)) {
          if (work.aborted || cancel.aborted) break;
          if (command.state === 'pending') await this.#execute(command);
          this.#seq = Math.max(this.#seq, command.seq);
          await this.opts.onSeq(this.#seq);
        }
      }
      if (this.#pending) continue;
      if (this.#stopped || work.aborted) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.opts.pollMs());
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = undefined;
    }
  }

  async #execute(command: RunCommand): Promise<void> {
    const { runtime, instanceId, events, fencingToken: token } = this.opts;
    try {
      await this.opts.client.ackCommand(command.id, { fencing_token: token });
    } catch (e) {
      this.opts.logger.warn({ run_id: this.opts.runId, command_id: command.id, err: e }, 'ack refused');
      return;
    }
    events.append('command_status', { command_id: command.id, state: 'acked' });
    let state: 'completed' | 'failed' = 'failed';
    let exitCode: number | undefined;
    let message: string | undefined;
    try {
      const handle = await runtime.exec(instanceId, command.payload.command, {
        signal: this.opts.work,
        ...(command.payload.env ? { env: command.payload.env } : {}),
        ...(command.payload.stdin !== undefined ? { stdin: command.payload.stdin } : {}),
      });
      try {
        for await (const chunk of handle.output)
          events.appendOutput(chunk.stream, chunk.data, chunk.bytes, { command_id: command.id });
      } finally {
        events.endOutput(command.id);
      }
      const exit = await handle.exit;
      exitCode = exit.exitCode;
      state = exit.exitCode === 0 ? 'completed' : 'failed';
      if (state === 'failed') message = `exited with code ${exit.exitCode}`;
    } catch (e) {
      message = (e as Error).message.slice(0, 4000);
    }
    const end = {
      ...(exitCode !== undefined ? { exit_code: exitCode } : {}),
      ...(message ? { message } : {}),
    };
    events.append('command_status', { command_id: command.id, state, ...end });
    await events.flush();
    await this.opts.reporter.retry(() =>
      this.opts.client.commandStatus(command.id, { fencing_token: token, state, ...end }),
    );
  }
}
