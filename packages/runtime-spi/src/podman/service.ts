import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How long the service stays up with nothing to do (`podman system service --time`). */
const IDLE_SECONDS = 60;
/** How long a starting service may take to answer `/_ping` before the CLI is used instead. */
const START_TIMEOUT_MS = 15_000;
/** After the service failed to start, the CLI is used this long before trying again. */
const RETRY_AFTER_MS = 60_000;
/** One `/_ping` may take this long: a service that accepted the connection and hangs is not waited for. */
const PING_TIMEOUT_MS = 1_000;

export interface ServiceAnswer {
  status: number;
  body: string;
}

/**
 * podman's own REST API (libpod) on a private unix socket, served by a `podman system service`
 * this process starts on first use and shares between the adapters of one podman binary. It
 * is only an accelerator: every caller falls back to the CLI when it is unavailable
 * (`undefined`). The service exits by itself after `IDLE_SECONDS` without a request (and is
 * started again on the next one), and is ended when this process exits.
 */
export class PodmanService {
  #socket: Promise<string | undefined> | undefined;
  #child: ChildProcess | undefined;
  #failedAt = 0;
  /** Adapters using it: the last one to close ends the service. */
  users = 0;

  readonly #startTimeoutMs: number;

  constructor(
    readonly podmanPath: string,
    opts: { startTimeoutMs?: number } = {},
  ) {
    this.#startTimeoutMs = opts.startTimeoutMs ?? START_TIMEOUT_MS;
  }

  /** Ends the service (the next call starts another). */
  stop(): void {
    this.#reset();
  }

  /**
   * One request; `undefined` when the service cannot be reached (the caller uses the CLI).
   * Aborting `signal` rejects with the signal's reason.
   */
  async call(
    method: string,
    path: string,
    opts: { signal?: AbortSignal | undefined; body?: unknown } = {},
  ): Promise<ServiceAnswer | undefined> {
    const started = this.#ensure();
    const socket = await started;
    if (!socket) return undefined;
    try {
      return await httpCall(socket, method, `/v4.0.0/libpod${path}`, opts);
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      // The service went away (idle expiry, killed): the next call starts another one. Only
      // if it is still the current one: ending a newer service would drop its calls in flight
      // (a `start` it may have done, which its caller would then repeat through the CLI).
      if (this.#socket === started) this.#reset();
      return undefined;
    }
  }

  #ensure(): Promise<string | undefined> {
    if (Date.now() - this.#failedAt < RETRY_AFTER_MS) return Promise.resolve(undefined);
    this.#socket ??= this.#start().catch(() => {
      this.#failedAt = Date.now();
      this.#reset();
      return undefined;
    });
    return this.#socket;
  }

  async #start(): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'runt-podman-'));
    const socket = join(dir, 'podman.sock');
    const child = spawn(
      this.podmanPath,
      ['system', 'service', '--time', String(IDLE_SECONDS), `unix://${socket}`],
      {
        stdio: 'ignore',
      },
    );
    child.unref();
    this.#child = child;
    child.once('error', () => undefined);
    child.once('exit', () => {
      rmSync(dir, { recursive: true, force: true });
      if (this.#child === child) this.#reset();
    });
    liveServices.add(child);
    child.once('exit', () => liveServices.delete(child));
    const deadline = Date.now() + this.#startTimeoutMs;
    for (;;) {
      // Each ping is bounded: a service that accepts the connection and never answers must not
      // hold its caller (and every call waiting for the service) forever.
      const ping = await httpCall(socket, 'GET', '/_ping', {
        signal: AbortSignal.timeout(Math.min(PING_TIMEOUT_MS, Math.max(1, deadline - Date.now()))),
      }).catch(() => undefined);
      if (ping?.status === 200) return socket;
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error('podman system service did not answer');
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  #reset(): void {
    const child = this.#child;
    this.#child = undefined;
    this.#socket = undefined;
    if (child && child.exitCode === null) child.kill('SIGTERM');
  }
}

/** Services started by this process: ended when it exits (an idle one would end by itself). */
const liveServices = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveServices) child.kill('SIGTERM');
});

const services = new Map<string, PodmanService>();
/** The one service of a podman binary in this process, for one more adapter ({@link releasePodmanService} when it closes). */
export function podmanService(podmanPath: string): PodmanService {
  let service = services.get(podmanPath);
  if (!service) services.set(podmanPath, (service = new PodmanService(podmanPath)));
  service.users++;
  return service;
}

/** An adapter closed: the service ends with the last one. */
export function releasePodmanService(service: PodmanService): void {
  if (--service.users > 0) return;
  service.stop();
  services.delete(service.podmanPath);
}

function httpCall(
  socketPath: string,
  method: string,
  path: string,
  opts: { signal?: AbortSignal | undefined; body?: unknown },
): Promise<ServiceAnswer> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
