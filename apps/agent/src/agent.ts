import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import {
  ControlPlaneClient,
  LEASE_MS_DEFAULT,
  LEASE_MS_MAX,
  MIN_HELD_LEASE_MS,
  isApiError,
  jitter,
  sleep,
  STATUS_STARTED_FORM,
  type AgentMessage,
  type HandBackRunResponse,
  type RegisterWorkstationRequest,
} from '@runt/protocol';
import { LeaseClient } from '@runt/leases';
import type { Runtime, RuntimeRegistry } from '@runt/runtime-spi';
import { AgentError } from './agent-error.js';
import { CloudUrlPool, parseCloudUrls } from './cloud-url-pool.js';
import { createLogger } from './create-logger.js';
import { defaultRuntimes } from './default-runtimes.js';
import { LinkClient } from './link-client.js';
import { linkVia } from './link-via.js';
import { heartbeatLoop, LINK_DOWN_SPREAD_MS, LinkDownGrace, pollLoop } from './agent-loops.js';
import { handleControlMessage } from './control-messages.js';
import { Reachability, type ReachReport } from './reachability.js';
import { readoptRuns } from './readopt-runs.js';
import { releaseOrphans } from './release-orphans.js';
import { recordRunner } from './runner-history.js';
import { RunExecution, type RunExecutionDeps } from './run-execution.js';
import { RunSlots } from './run-slots.js';
import { RunStateStore } from './run-state-store.js';
import { StartGate } from './start-gate.js';
import { WorkstationRegistration } from './workstation-registration.js';

/** `initialized → starting → running → draining → stopping → stopped`, or `failed` when it could not go on. */
export type AgentState =
  'initialized' | 'starting' | 'running' | 'draining' | 'stopping' | 'stopped' | 'failed';

export interface AgentOptions {
  /** Control plane URL, or several comma-separated: the agent fails over between them. */
  url: string;
  /** The workstation token (from the environment or the credential file; never argv). */
  token: string;
  /** The workstation id the agent believes it is; the control plane's answer wins. */
  workstationId?: string;
  displayName?: string;
  /** Runtimes to offer, by name; only those whose `available()` says yes are advertised. */
  runtimes: string[];
  /** Where runtimes come from (default: the built-in adapters, see `defaultRuntimes`). */
  registry?: RuntimeRegistry;
  /** Runs at once (default 1). */
  maxRuns?: number;
  /**
   * Runs taken ahead of a free slot (default 0; `--prefetch`): the agent holds up to
   * `maxRuns + prefetch` runs, at most `maxRuns` of them running; the others wait, claimed,
   * created and journaled, for a slot (FIFO). See docs/agent.md, _Prefetch_.
   */
  prefetch?: number;
  labels?: Record<string, string>;
  /** Take one run, finish it, stop. */
  once?: boolean;
  /** Hold the WebSocket link (default true); without it the agent polls. */
  link?: boolean;
  /**
   * Jitter windows of the link (issue 9; docs/agent.md, _Link_): its first dial waits a random
   * part of `startMs` (default 5 s), and while it is down the HTTP poll and heartbeat stand in only
   * `pollIntervalMs` + a random part of `downSpreadMs` (default 15 s) after it dropped.
   */
  linkJitter?: { startMs?: number; downSpreadMs?: number };
  /** Lease length per run (default 30 s). */
  leaseMs?: number;
  /** Polling period while the link is down (default 2 s). */
  pollIntervalMs?: number;
  /** Workstation heartbeat period (default 15 s). */
  heartbeatIntervalMs?: number;
  /** How long runs may finish after a shutdown starts before they are stopped (default 30 s). */
  shutdownGraceMs?: number;
  /** Polite-signal-to-kill time when stopping a workload (default 10 s). */
  stopTimeoutMs?: number;
  /** Signals that start a graceful shutdown while `run()` is going (default SIGTERM, SIGINT; `[]` for none). A second one skips the grace time. */
  shutdownSignals?: NodeJS.Signals[];
  /** Per-run state files and working directories. */
  stateDir: string;
  logger?: Logger;
  /** Reported as `agent_version`. */
  version?: string;
  /** Aborting it is the same as calling `shutdown()`. */
  signal?: AbortSignal;
}

/**
 * The workstation agent: registers, holds the link (or polls), claims offered runs up to
 * `maxRuns` and executes each in its runtime, and re-adopts the runs it held before a
 * restart. This class is the lifecycle (start, shutdown, drain, fatal errors) that ties the
 * jobs together: slots (`RunSlots`), re-adoption (`readoptRuns`), the heartbeat and poll loops
 * (`agent-loops.ts`), control messages (`handleControlMessage`) and each run (`RunExecution`). `run()` resolves only once the agent has stopped; `shutdown()` is idempotent and
 * stops taking offers, lets runs finish up to `shutdownGraceMs`, then stops them.
 *
 * @example
 * const agent = new Agent({ url: 'http://127.0.0.1:8787', token: process.env.RUNT_CLOUD_TOKEN!, runtimes: ['process'], stateDir: '/tmp/runt-agent' });
 * await agent.run(); // until SIGTERM / SIGINT
 */
export class Agent {
  #state: AgentState = 'initialized';
  readonly #opts: Required<
    Omit<AgentOptions, 'workstationId' | 'displayName' | 'signal' | 'logger' | 'registry' | 'linkJitter'>
  > &
    AgentOptions;
  readonly #log: Logger;
  /** Whether the control plane answers: one log line per change, not per retry. */
  readonly #reachability: Reachability;
  readonly #reach: ReachReport;
  readonly #registry: RuntimeRegistry;
  readonly #urls: CloudUrlPool;
  readonly #client: ControlPlaneClient;
  /** Renews run leases; claims stay on `#client` (node:http keep-alive). */
  readonly #leases: LeaseClient;
  readonly #store: RunStateStore;
  readonly #slots: RunSlots<RunExecution>;
  /** At most `maxRuns` workloads at once while runs are taken ahead (`prefetch`); none without. */
  readonly #startGate: StartGate | undefined;
  readonly #registrar: WorkstationRegistration;
  readonly #runtimes = new Map<string, Runtime>();
  readonly #unavailable = new Map<string, string>();
  readonly #depsByRuntime = new Map<
    string,
    { workstationId: string; runnerId: string; deps: RunExecutionDeps }
  >();
  /** Aborted when the agent stops taking offers (drain/shutdown). */
  readonly #taking = new AbortController();
  /** Aborted when every loop must end. */
  readonly #life = new AbortController();
  #link: LinkClient | undefined;
  #workstationId = '';
  #runnerId = '';
  #fatal: Error | undefined;
  #shutdown: Promise<void> | undefined;
  #hurry = false;
  #hurryWake: (() => void) | undefined;
  #pollWake: (() => void) | undefined;
  /** When HTTP may stand in for a link that is down (never, for an agent without a link: at once). */
  #linkGrace: LinkDownGrace | undefined;
  #drainOnStart = false;
  /** The control plane asked for this stop (a drain): it shows the workstation draining until the agent exits. */
  #drainRequested = false;
  /** Hand-backs going out over HTTP (no link): the exit waits for them. */
  readonly #handingBack = new Set<Promise<void>>();
  #stopped!: () => void;
  readonly #stoppedPromise = new Promise<void>((r) => (this.#stopped = r));

  constructor(opts: AgentOptions) {
    if (opts.runtimes.length === 0) throw new AgentError('config-invalid', 'name at least one runtime');
    this.#opts = {
      maxRuns: 1,
      prefetch: 0,
      labels: {},
      once: false,
      link: true,
      leaseMs: LEASE_MS_DEFAULT,
      pollIntervalMs: 2_000,
      heartbeatIntervalMs: 15_000,
      shutdownGraceMs: 30_000,
      stopTimeoutMs: 10_000,
      shutdownSignals: ['SIGTERM', 'SIGINT'],
      version: '0.0.0',
      ...opts,
    };
    // The lease client renews every max(leaseMs / 3, 1 s) and needs two renewals per lease.
    if (!(this.#opts.leaseMs >= MIN_HELD_LEASE_MS && this.#opts.leaseMs <= LEASE_MS_MAX)) {
      throw new AgentError(
        'config-invalid',
        `leaseMs must be between ${MIN_HELD_LEASE_MS} and ${LEASE_MS_MAX} (got ${this.#opts.leaseMs})`,
      );
    }
    this.#log = opts.logger ?? createLogger('info');
    this.#reachability = new Reachability(this.#log);
    this.#reach = {
      reached: () => this.#reachability.reached(),
      failed: (e, what, startedAt) => this.#reachability.failed(this.#urls.current, e, what, startedAt),
    };
    this.#registry = opts.registry ?? defaultRuntimes(opts.stateDir);
    // One journal for every held run (agents before it wrote `agent/runs/<run id>.json`: read once).
    this.#store = new RunStateStore(join(opts.stateDir, 'agent', 'journal'), {
      legacyDir: join(opts.stateDir, 'agent', 'runs'),
    });
    // Several control plane URLs (comma-separated): calls fail over through the pool's fetch.
    // One URL: node:http keep-alive for the many small fenced calls (a fraction of fetch's per-request cost).
    this.#urls = new CloudUrlPool(parseCloudUrls(opts.url));
    const failover = this.#urls.urls.length > 1;
    // Fenced run calls (claim, renew, events, status, release, commands) go over the link while
    // it is open, over HTTP otherwise (`linkVia`).
    const via = linkVia(() => this.#link);
    this.#client = new ControlPlaneClient({
      url: this.#urls.first,
      token: opts.token,
      retries: 3,
      timeoutMs: 15_000,
      via,
      ...(failover ? { fetch: this.#urls.fetch } : { nodeHttp: true }),
    });
    this.#leases = new LeaseClient({
      baseUrl: this.#urls.first,
      token: opts.token,
      timeoutMs: 15_000,
      via,
      ...(failover ? { fetch: this.#urls.fetch } : { keepAlive: true }),
    });
    this.#workstationId = opts.workstationId ?? '';
    this.#registrar = new WorkstationRegistration({
      client: this.#client,
      displayName: opts.displayName,
      maxRuns: this.#opts.maxRuns,
      prefetch: this.#opts.prefetch,
      labels: this.#opts.labels,
      version: this.#opts.version,
      runtimes: () => [...this.#runtimes.keys()],
      signal: this.#life.signal,
      reach: this.#reach,
      logger: this.#log,
    });
    if (!(Number.isInteger(this.#opts.prefetch) && this.#opts.prefetch >= 0 && this.#opts.prefetch <= 10_000))
      throw new AgentError('config-invalid', `prefetch must be 0..10000 (got ${this.#opts.prefetch})`);
    this.#startGate = this.#opts.prefetch > 0 ? new StartGate(this.#opts.maxRuns) : undefined;
    this.#slots = new RunSlots<RunExecution>({
      maxRuns: this.#opts.maxRuns,
      prefetch: this.#opts.prefetch,
      once: this.#opts.once,
      taking: this.#taking.signal,
      claim: (run) => RunExecution.claim(this.#runDeps(run.runtime), run),
      accept: (claim) => RunExecution.accept(this.#runDeps(claim.run.runtime), claim),
      onDone: () => {
        if (this.#opts.once) void this.shutdown();
        else this.#wakePollForSlot();
        this.#hurryWake?.();
      },
      onFreed: () => this.#wakePollForSlot(),
      logger: this.#log,
    });
  }

  /**
   * A slot may be free: the poll loop asks for offers now, when it would poll at all (the link
   * is down). With the link up it does not poll (offers come over the link; the link dropping
   * wakes it), so it is left asleep: no timer, listener and promise made again twice per run
   * (issue 9, agent profile).
   */
  #wakePollForSlot(): void {
    if (this.#link?.up !== true) this.#pollWake?.();
  }

  get state(): AgentState {
    return this.#state;
  }

  /** The workstation id the control plane confirmed (empty before registration). */
  get workstationId(): string {
    return this.#workstationId;
  }

  /** Ids of the runs held right now. */
  get runningRunIds(): string[] {
    return this.#slots.ids;
  }

  /**
   * Starts the agent and resolves once it has stopped (after `shutdown()`, a shutdown signal,
   * the `signal` option, the end of a `once` run, or a `drain` from the control plane).
   * Rejects when it cannot start (no runtime available, credential refused) or when the
   * credential is revoked while running.
   */
  async run(): Promise<void> {
    if (this.#state !== 'initialized')
      throw new AgentError('internal', `run() called in state ${this.#state}`);
    this.#state = 'starting';
    const onSignal = (sig: NodeJS.Signals) => {
      this.#log.info({ signal: sig }, this.#shutdown ? 'second signal: stopping runs now' : 'shutting down');
      if (this.#shutdown) this.#hurryUp();
      void this.shutdown();
    };
    for (const sig of this.#opts.shutdownSignals) process.on(sig, onSignal);
    const onAbort = () => void this.shutdown();
    this.#opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (this.#opts.signal?.aborted) return;
      await this.#start();
      if (this.#state === 'starting') this.#state = 'running';
      this.#log.info(
        {
          workstation_id: this.#workstationId,
          runtimes: [...this.#runtimes.keys()],
          max_runs: this.#opts.maxRuns,
          ...(this.#opts.prefetch > 0 ? { prefetch: this.#opts.prefetch } : {}),
          link: this.#opts.link,
          adopted: this.runningRunIds,
        },
        'agent running',
      );
      if (this.#opts.link)
        this.#linkGrace = new LinkDownGrace({
          minMs: this.#opts.pollIntervalMs,
          spreadMs: this.#opts.linkJitter?.downSpreadMs ?? LINK_DOWN_SPREAD_MS,
        });
      void this.#linkLoop();
      void this.#heartbeatLoop();
      void this.#pollLoop();
      if (this.#drainOnStart) this.#drain();
      await this.#stoppedPromise;
      if (this.#fatal) throw this.#fatal;
    } catch (e) {
      this.#fatal ??= e as Error;
      await this.shutdown();
      this.#state = 'failed';
      throw e;
    } finally {
      for (const sig of this.#opts.shutdownSignals) process.off(sig, onSignal);
      this.#opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Stops taking offers, lets held runs finish for up to `shutdownGraceMs`, stops the rest
   * (reported `cancelled`), closes the link, tells the control plane it is no longer
   * listening and closes the runtimes. Idempotent: every call returns the same promise.
   *
   * @example
   * process.once('SIGTERM', () => void agent.shutdown());
   */
  shutdown(opts: { graceMs?: number } = {}): Promise<void> {
    this.#shutdown ??= this.#doShutdown(opts.graceMs ?? this.#opts.shutdownGraceMs);
    return this.#shutdown;
  }

  // ---- start ----

  async #start(): Promise<void> {
    for (const name of this.#opts.runtimes) {
      try {
        const runtime = await this.#registry.get(name);
        const av = await runtime.available({ signal: this.#life.signal });
        if (av.available) this.#runtimes.set(name, runtime);
        else this.#unavailable.set(name, av.reason ?? 'not available');
      } catch (e) {
        this.#unavailable.set(name, (e as Error).message);
      }
    }
    for (const [name, reason] of this.#unavailable)
      this.#log.warn({ runtime: name, reason }, 'runtime not available; not offered');
    if (this.#runtimes.size === 0) {
      throw new AgentError(
        'no-runtime',
        `no runtime is available: ${[...this.#unavailable].map(([n, r]) => `${n}: ${r}`).join('; ')}`,
      );
    }
    await this.#registerHttp(true, { untilDone: true });
    this.#runnerId = `${this.#workstationId}/${randomBytes(6).toString('hex')}`;
    // What the journal held at this start, and the runners of the agents before this one on this
    // state dir (dead: this one holds agent.lock), recorded before anything is claimed.
    const journaled = new Set((await this.#store.list()).map((s) => s.run_id));
    const predecessors = await recordRunner(join(this.#opts.stateDir, 'agent', 'runners'), this.#runnerId);
    // Runs still leased to a predecessor that its journal never held never started: back to
    // the queue, instead of failing `runner-lost` when their leases run out. First: one listing,
    // while re-adoption may stop instances one by one (an agent killed again meanwhile released
    // nothing; chaos, issue 8).
    await releaseOrphans({
      client: this.#client,
      workstationId: this.#workstationId,
      predecessors,
      journaled,
      boundMs: this.#opts.leaseMs,
      logger: this.#log,
    });
    await this.#readopt();
  }

  #registration(listening: boolean): RegisterWorkstationRequest {
    return this.#registrar.body(listening);
  }

  async #registerHttp(listening: boolean, opts: { untilDone?: boolean } = {}): Promise<boolean> {
    const ws = await this.#registrar.register(listening, opts);
    if (!ws) return false;
    this.#workstationId = ws.id;
    // How a drain reaches an agent without a link (or one whose `drain` message was lost).
    if (listening && ws.status === 'draining') {
      if (this.#state === 'starting') this.#drainOnStart = true;
      else this.#drain();
    }
    return true;
  }

  /**
   * {@link #deps} made once per runtime while the workstation and runner ids stay the same: made
   * per run, the object, its closures and its path join were ~1 KB allocated per run (issue 9,
   * agent profile). An unavailable runtime's (its error message) is made each time.
   */
  #runDeps(runtimeName: string): RunExecutionDeps {
    const kept = this.#depsByRuntime.get(runtimeName);
    if (kept && kept.workstationId === this.#workstationId && kept.runnerId === this.#runnerId)
      return kept.deps;
    const deps = this.#deps(runtimeName);
    if (this.#runtimes.has(runtimeName))
      this.#depsByRuntime.set(runtimeName, {
        workstationId: this.#workstationId,
        runnerId: this.#runnerId,
        deps,
      });
    return deps;
  }

  #deps(runtimeName: string): RunExecutionDeps {
    const runtime = this.#runtimes.get(runtimeName);
    return {
      client: this.#client,
      taking: this.#taking.signal,
      leases: this.#leases,
      runtime: runtime ?? {
        unavailable: `runtime "${runtimeName}" is not available on this workstation${this.#unavailable.has(runtimeName) ? `: ${this.#unavailable.get(runtimeName)}` : ''}`,
      },
      store: this.#store,
      workRoot: join(this.#opts.stateDir, 'agent', 'work'),
      workstationId: this.#workstationId,
      runnerId: this.#runnerId,
      leaseMs: this.#opts.leaseMs,
      stopTimeoutMs: this.#opts.stopTimeoutMs,
      commandPollMs: () => jitter(this.#link?.up ? 10_000 : this.#opts.pollIntervalMs),
      linkUp: () => this.#link?.up === true,
      onSlotFree: () => this.#slots.freed(),
      handBack: (runId, fencingToken) => this.#handBack(runId, fencingToken),
      takesStartWithEnd: () => this.#link?.serves(STATUS_STARTED_FORM) === true,
      startGate: this.#startGate,
      logger: this.#log,
    };
  }

  /**
   * Gives a claimed, never started run back to the queue, fenced by its token (the hand-back
   * of a run claimed on offer, issue 9): the answered `hand-back` call (over the link when it is
   * up and its control plane serves the op, else HTTP), retried like every fenced call, so a
   * link that drops with it does not lose it (no attempt used). A control plane without the call
   * (404 `not-found`) gets the older forms: a link `result` with `ok: false`, or a release over
   * HTTP (which re-queues a never started run, using an attempt).
   */
  #handBack(runId: string, fencingToken: number): Promise<void> {
    const going = this.#client
      .handBackRun(runId, { fencing_token: fencingToken })
      .then(
        (a) =>
          this.#log.info({ run_id: runId, handed_back: a.handed_back, status: a.status }, handBackNote(a)),
        (e: unknown) =>
          isApiError(e, 'not-found')
            ? this.#handBackOld(runId, fencingToken)
            : this.#handBackFailed(runId, e),
      )
      .finally(() => this.#handingBack.delete(going));
    this.#handingBack.add(going);
    return going;
  }

  /** The hand-back for a control plane that predates the `hand-back` call. */
  async #handBackOld(runId: string, fencingToken: number): Promise<void> {
    const message = {
      type: 'result',
      id: runId,
      ok: false,
      error: 'not taken',
      fencing_token: fencingToken,
    } as const;
    if (this.#link?.send(message) === true) return;
    await this.#client.releaseRun(runId, { fencing_token: fencingToken }).then(
      () => this.#log.info({ run_id: runId }, 'handed back (released over HTTP)'),
      (e: unknown) => this.#handBackFailed(runId, e),
    );
  }

  #handBackFailed(runId: string, e: unknown): void {
    this.#log.warn({ run_id: runId, err: e }, 'handing the run back failed; its lease will run out');
  }

  /** Answers over the link; a hand-back (a `result` with a token) goes over HTTP when the link is down. */
  #reply(message: AgentMessage): void {
    if (message.type === 'result' && !message.ok && message.fencing_token !== undefined)
      void this.#handBack(message.id, message.fencing_token);
    else void this.#link?.send(message);
  }

  /** Resumes the runs whose instances survived a restart and whose lease is still ours; stops the rest. */
  #readopt(): Promise<void> {
    return readoptRuns({
      client: this.#client,
      runtimes: this.#runtimes,
      store: this.#store,
      workstationId: this.#workstationId,
      leaseMs: this.#opts.leaseMs,
      stopTimeoutMs: this.#opts.stopTimeoutMs,
      adopt: (name, state, confirmed, secrets) =>
        this.#slots.track(
          RunExecution.adopt({ ...this.#deps(name), runnerId: state.runner_id }, state, confirmed, secrets),
        ),
      logger: this.#log,
    });
  }

  // ---- loops ----

  async #linkLoop(): Promise<void> {
    if (!this.#opts.link) return;
    this.#link = new LinkClient({
      url: () => this.#urls.current,
      onAttempt: (url, opened) => (opened ? this.#urls.succeeded(url) : this.#urls.failed(url)),
      token: () => this.#opts.token,
      // A draining agent that reconnects must not say it is listening again.
      register: () => ({
        type: 'register',
        workstation_id: this.#workstationId,
        workstation: this.#registration(!this.#taking.signal.aborted),
        running_run_ids: this.runningRunIds,
        // Claim on offer (issue 9): runs come leased to this runner, no claim round trip. Not
        // with `once`, which takes a single run (a batch would mostly be handed back).
        ...(this.#opts.once
          ? {}
          : { claim_on_offer: { runner_id: this.#runnerId, lease_ms: this.#opts.leaseMs } }),
      }),
      onMessage: (m) =>
        handleControlMessage(m, {
          registered: (id) => {
            this.#workstationId = id;
          },
          offer: (run) => this.#slots.offer(run),
          claimed: (claim) => this.#slots.accept(claim),
          cancel: (runId) => this.#slots.get(runId)?.cancel('cancelled by request'),
          command: (runId) => this.#slots.wakeCommands(runId),
          drain: () => this.#drain(),
          reply: (message) => this.#reply(message),
        }),
      onUp: (up) => {
        if (up) return this.#linkGrace?.up();
        this.#linkGrace?.down();
        // The poll loop sleeps 30 s while linked: it starts the grace's wait now.
        this.#pollWake?.();
      },
      // Shed with a `Retry-After`: no HTTP poll until the re-dial's answer is due; a dial that
      // found no control plane ends the hold (the poll loop re-reads its wait now).
      onHold: (ms) => {
        if (ms !== undefined) return this.#linkGrace?.hold(ms);
        if (this.#linkGrace?.release()) this.#pollWake?.();
      },
      onFatal: (e) => this.#die(e),
      reach: this.#reachability,
      logger: this.#log,
      ...(this.#opts.linkJitter?.startMs === undefined
        ? {}
        : { startJitterMs: this.#opts.linkJitter.startMs }),
    });
    await this.#link.run(this.#life.signal);
  }

  #heartbeatLoop(): Promise<void> {
    return heartbeatLoop({
      signal: this.#life.signal,
      intervalMs: this.#opts.heartbeatIntervalMs,
      sendOverLink: () =>
        this.#link?.send({ type: 'heartbeat', running_run_ids: this.runningRunIds }) === true,
      registerHttp: () => this.#registerHttp(this.#state !== 'draining'),
      httpWaitMs: () => this.#linkGrace?.waitMs() ?? 0,
      onFatal: (e) => this.#die(e),
      reach: this.#reach,
      logger: this.#log,
    });
  }

  #pollLoop(): Promise<void> {
    return pollLoop({
      signal: this.#taking.signal,
      pollIntervalMs: this.#opts.pollIntervalMs,
      httpWaitMs: () => this.#linkGrace?.waitMs() ?? 0,
      linkUp: () => this.#link?.up === true,
      hasCapacity: () => this.#slots.hasCapacity(),
      offered: () => this.#client.offeredRuns(this.#workstationId),
      offer: (run) => this.#slots.offer(run),
      onFatal: (e) => this.#die(e),
      setWake: (wake) => {
        this.#pollWake = wake;
      },
      reach: this.#reach,
      logger: this.#log,
    });
  }

  /** The control plane asked for a drain: stop taking runs, finish the held ones (no grace limit), stop. */
  #drain(): void {
    if (this.#shutdown) return;
    this.#drainRequested = true;
    this.#log.info('drain requested: finishing the runs held, then stopping');
    void this.shutdown({ graceMs: Number.MAX_SAFE_INTEGER });
  }

  // ---- stop ----

  #die(error: AgentError): void {
    this.#log.error({ err: error }, error.message);
    this.#fatal ??= error;
    void this.shutdown({ graceMs: 0 });
  }

  /** Registers `listening: false`: one quick try (a control plane that is down must not hold the exit up). */
  async #sayNotListening(): Promise<void> {
    if (!this.#workstationId) return;
    const quick = new ControlPlaneClient({
      url: this.#urls.current,
      token: this.#opts.token,
      retries: 0,
      timeoutMs: 3_000,
    });
    await quick.registerWorkstation(this.#registration(false)).catch(() => undefined);
  }

  #hurryUp(): void {
    this.#hurry = true;
    this.#hurryWake?.();
  }

  async #doShutdown(graceMs: number): Promise<void> {
    if (this.#state === 'running' || this.#state === 'starting') this.#state = 'draining';
    this.#taking.abort();
    // Runs waiting for a free slot (`prefetch`) never started: back to the queue now (fenced
    // hand-backs), not held through the stop waiting for a slot.
    this.#startGate?.close();
    this.#slots.freed(); // parked offers are declined
    this.#pollWake?.();
    // Told at once, so the scheduler stops placing runs here while held runs finish (each would
    // only be handed back, and placed here again). Not on a drain the control plane asked for: it
    // places nothing on a draining workstation already, and `listening: false` ends the drain
    // there — the workstation would show online, not draining, while its runs finish.
    const notListening = this.#drainRequested ? Promise.resolve() : this.#sayNotListening();
    // Claims in flight first: one answered before the agent stopped taking runs is held (and
    // gets the grace below), one answered after is handed back, never started (issue 8 review:
    // a claim answered after this point used to start a run once the runtimes were closed).
    await this.#slots.settled();
    const deadline = performance.now() + graceMs;
    while (this.#slots.size > 0 && !this.#hurry && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(1_000, Math.max(0, deadline - performance.now())));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#hurryWake = done;
      });
    }
    if (this.#slots.size > 0)
      this.#log.warn({ runs: this.runningRunIds }, 'grace time over: stopping the runs still going');
    const held = this.#slots.values();
    for (const exec of held) exec.cancel('the agent shut down before the run finished');
    // Bounded: runs no longer stop at their lease's local deadline (the control plane decides),
    // so a control plane that does not answer must not hold the exit up. What has not ended by
    // then is left to the next start (instance and journal entry kept), which reports it.
    const ended = Promise.all(held.map((e) => e.done)).then(() => true);
    const bound = new AbortController();
    const inTime = await Promise.race([
      ended,
      sleep(this.#opts.stopTimeoutMs + this.#opts.leaseMs, bound.signal).then(() => false),
    ]);
    bound.abort();
    if (!inTime) {
      for (const exec of held) exec.abandon();
      await ended;
    }
    // Offers and runs claimed on offer that arrived meanwhile were refused: their answers (the
    // hand-backs) go out before the link closes.
    await this.#slots.settled();
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#state = 'stopping';
    this.#life.abort();
    await notListening;
    // Said again, on purpose: the early one was skipped (a drain) or may have failed, and a
    // registration in flight since before the stop (the start's, retried until done) may have
    // landed after it with `listening: true`. The last word at exit must be `false`.
    await this.#sayNotListening();
    await Promise.all(this.#handingBack);
    await this.#registry.close().catch(() => undefined);
    await this.#store
      .close()
      .catch((e: unknown) => this.#log.warn({ err: e }, 'closing the run journal failed'));
    this.#state = this.#fatal ? 'failed' : 'stopped';
    this.#log.info('agent stopped');
    this.#stopped();
  }
}

/**
 * What an agent's log says of a hand-back's answer: what became of the run — back in the queue,
 * or ended `cancelled` (its cancel was asked while it was accepted) — or that it did not apply.
 *
 * @example
 * handBackNote({ handed_back: true, status: 'cancelled' }); // 'hand-back: the run was cancelled'
 */
export function handBackNote(a: HandBackRunResponse): string {
  if (!a.handed_back) return 'hand-back did not apply';
  return a.status === 'cancelled' ? 'hand-back: the run was cancelled' : 'handed back';
}
