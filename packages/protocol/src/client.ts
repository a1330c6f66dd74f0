import type { z } from 'zod';
import { ApiError, apiErrorOf, unreachableError } from './errors.js';
import {
  HttpTransport,
  TransportError,
  type TransportAnswer,
  type TransportRequest,
  type TransportVia,
} from './transport.js';
import {
  listCredentialsResponseSchema,
  listWorkstationsResponseSchema,
  mintPairingCodeResponseSchema,
  pairingCodeStatusResponseSchema,
  registerWorkstationResponseSchema,
  revokeCredentialResponseSchema,
  type MintPairingCodeRequest,
  type RegisterWorkstationRequest,
} from './schemas.js';
import {
  appendEventsResponseSchema,
  bundleResponseSchema,
  claimRunResponseSchema,
  commandResponseSchema,
  handBackRunResponseSchema,
  heartbeatRunResponseSchema,
  listCommandsResponseSchema,
  listEventsResponseSchema,
  listRunsResponseSchema,
  okResponseSchema,
  reportRunStatusBriefResponseSchema,
  reportRunStatusResponseSchema,
  runResponseSchema,
  submitRunsBatchResponseSchema,
  type QueueCommandRequest,
  type ReportRunStatusRequest,
  type RunEventInput,
  type RunStatus,
  type SubmitRunRequest,
  type SubmitRunsBatchRequest,
} from './runs.js';

export interface ControlPlaneClientOptions {
  /** Base URL of the control plane, e.g. `http://127.0.0.1:8787`. */
  url: string;
  /** Bearer token (admin or workstation); a function is read on every request. */
  token?: string | (() => string | undefined);
  /** Attempts after the first for 429/503 and network failures (default 3). */
  retries?: number;
  /** Per-request timeout (default 15 s). */
  timeoutMs?: number;
  fetch?: typeof fetch;
  /**
   * Send calls with `node:http` over keep-alive connections instead of `fetch` (same retries,
   * errors and validation; a fraction of the per-request cost). For long-running Node callers
   * with many small calls (the agent). Ignored with a custom `fetch`.
   */
  nodeHttp?: boolean;
  /** Tried before HTTP on every attempt (the agent's link for its fenced run calls); see `HttpTransportOptions.via`. */
  via?: TransportVia;
}

/** Answers the client retries (`Retry-After` honoured), with backoff from 250 ms up to 30 s. */
const RETRY_STATUSES = [429, 502, 503, 504];

/**
 * A typed client for the control plane's HTTP API. Every answer is validated with the zod
 * schemas of this package; error answers become {@link ApiError}s with the server's code and
 * message, and network failures an `ApiError` with code `unreachable`. Network failures and
 * 429/502/503/504 are retried through {@link HttpTransport} (exponential backoff with jitter,
 * `Retry-After` honoured up to 60 s); timeouts are not.
 *
 * @example
 * const cp = new ControlPlaneClient({ url: 'http://127.0.0.1:8787', token: process.env.RUNT_ADMIN_TOKEN });
 * const { pairing, connect_command } = await cp.mintPairingCode();
 */
export class ControlPlaneClient {
  readonly url: string;
  readonly #transport: HttpTransport;

  constructor(opts: ControlPlaneClientOptions) {
    this.#transport = new HttpTransport({
      url: opts.url,
      ...(opts.token === undefined ? {} : { token: opts.token }),
      timeoutMs: opts.timeoutMs ?? 15_000,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      keepAlive: opts.nodeHttp === true,
      ...(opts.via ? { via: opts.via } : {}),
      retry: {
        retries: opts.retries ?? 3,
        statuses: RETRY_STATUSES,
        maxRetryAfterMs: 60_000,
        baseMs: 250,
        capMs: 30_000,
      },
    });
    this.url = this.#transport.url;
  }

  /** Mints a one-time pairing code (admin). */
  mintPairingCode(body: MintPairingCodeRequest = {}) {
    return this.call('post', 'api/workstations/pairing-codes', mintPairingCodeResponseSchema, body);
  }

  /** Where a pairing code stands: pending, redeemed, registered or expired (admin). */
  getPairingCode(id: string) {
    return this.call(
      'get',
      `api/workstations/pairing-codes/${encodeURIComponent(id)}/status`,
      pairingCodeStatusResponseSchema,
    );
  }

  /** Registration / heartbeat of the calling workstation. */
  registerWorkstation(body: RegisterWorkstationRequest) {
    return this.call('post', 'api/workstations', registerWorkstationResponseSchema, body);
  }

  /** The fleet, with online/offline status. */
  listWorkstations() {
    return this.call('get', 'api/workstations', listWorkstationsResponseSchema);
  }

  /** Credentials, never their secrets (admin). */
  listCredentials() {
    return this.call('get', 'api/workstations/credentials', listCredentialsResponseSchema);
  }

  /** Revokes the calling workstation's own credential (`runt workstation disconnect --revoke`). */
  revokeOwnCredential() {
    return this.call('post', 'api/workstations/self/revoke', revokeCredentialResponseSchema);
  }

  /** Revokes a credential at once (admin). */
  revokeCredential(id: string) {
    return this.call(
      'post',
      `api/workstations/credentials/${encodeURIComponent(id)}/revoke`,
      revokeCredentialResponseSchema,
    );
  }

  /** Drains a workstation (admin): no new runs; its agent finishes the runs it holds and exits. */
  drainWorkstation(id: string) {
    return this.call(
      'post',
      `api/workstations/${encodeURIComponent(id)}/drain`,
      registerWorkstationResponseSchema,
    );
  }

  /** Takes a drain back (admin): the workstation is offered runs again. */
  undrainWorkstation(id: string) {
    return this.call(
      'post',
      `api/workstations/${encodeURIComponent(id)}/undrain`,
      registerWorkstationResponseSchema,
    );
  }

  // ---- runs (admin) ----

  /** Submits a run; with `idempotency_key` a retried submit returns the same run. */
  submitRun(body: SubmitRunRequest) {
    return this.call('post', 'api/runs', runResponseSchema, body);
  }

  /** Submits up to 1,000 runs in one request (`POST /api/runs/batch`); one answer per run, in order. */
  submitRuns(body: SubmitRunsBatchRequest) {
    return this.call('post', 'api/runs/batch', submitRunsBatchResponseSchema, body);
  }

  listRuns(
    query: {
      status?: RunStatus;
      workstation_id?: string;
      runtime?: string;
      limit?: number;
      cursor?: string;
    } = {},
  ) {
    return this.call('get', 'api/runs', listRunsResponseSchema, undefined, query);
  }

  getRun(id: string) {
    return this.call('get', `api/runs/${encodeURIComponent(id)}`, runResponseSchema);
  }

  cancelRun(id: string) {
    return this.call('post', `api/runs/${encodeURIComponent(id)}/cancel`, runResponseSchema, {});
  }

  /** Queues a command (an exec) into a live run. */
  queueCommand(runId: string, body: QueueCommandRequest) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/commands`, commandResponseSchema, body);
  }

  /** One page of a run's events after `after_seq`. */
  listEvents(runId: string, query: { after_seq?: number; limit?: number } = {}) {
    return this.call(
      'get',
      `api/runs/${encodeURIComponent(runId)}/events`,
      listEventsResponseSchema,
      undefined,
      query,
    );
  }

  /** Uploads a bundle (tar or tar.gz bytes); the control plane checks the sha256. Idempotent. */
  async uploadBundle(sha256: string, bytes: Uint8Array) {
    return this.call('put', `api/bundles/${sha256}`, bundleResponseSchema, undefined, undefined, bytes);
  }

  // ---- runs (workstation: the agent) ----

  /** The polling path: runs offered to this workstation (used while the link is down). */
  offeredRuns(workstationId: string) {
    return this.workstationRuns(workstationId, { status: 'offered' });
  }

  /**
   * One page of the runs placed on a workstation, newest first, with their leases (a
   * workstation token sees only its own): how a restarted agent finds the runs the control
   * plane still thinks it holds.
   */
  workstationRuns(
    workstationId: string,
    query: { status?: RunStatus; limit?: number; cursor?: string } = {},
  ) {
    return this.call(
      'get',
      `api/workstations/${encodeURIComponent(workstationId)}/runs`,
      listRunsResponseSchema,
      undefined,
      query,
    );
  }

  claimRun(runId: string, body: { runner_id: string; lease_ms: number }) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/claim`, claimRunResponseSchema, body);
  }

  heartbeatRun(runId: string, body: { fencing_token: number; lease_ms: number }) {
    return this.call(
      'post',
      `api/runs/${encodeURIComponent(runId)}/heartbeat`,
      heartbeatRunResponseSchema,
      body,
    );
  }

  releaseRun(runId: string, body: { fencing_token: number }) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/release`, okResponseSchema, body);
  }

  /**
   * Hands back a run claimed on offer that this agent will not start: queued again, no attempt
   * used, fenced by its token (`handed_back: false` when it did not apply). Control planes
   * before it answer 404 `not-found`.
   *
   * @example
   * const { handed_back } = await client.handBackRun('run_1', { fencing_token: 3 });
   */
  handBackRun(runId: string, body: { fencing_token: number }) {
    return this.call(
      'post',
      `api/runs/${encodeURIComponent(runId)}/hand-back`,
      handBackRunResponseSchema,
      body,
    );
  }

  appendEvents(runId: string, body: { fencing_token: number; events: RunEventInput[] }) {
    return this.call(
      'post',
      `api/runs/${encodeURIComponent(runId)}/events`,
      appendEventsResponseSchema,
      body,
    );
  }

  reportStatus(runId: string, body: ReportRunStatusRequest) {
    return this.call(
      'post',
      `api/runs/${encodeURIComponent(runId)}/status`,
      reportRunStatusResponseSchema,
      body,
    );
  }

  /**
   * {@link reportStatus} answered briefly (`answer: 'brief'`): the run's status after the
   * report and the next seq, not the whole run — the agent's hot path (two reports a run).
   */
  reportStatusBrief(runId: string, body: Omit<ReportRunStatusRequest, 'answer'>) {
    return this.call(
      'post',
      `api/runs/${encodeURIComponent(runId)}/status`,
      reportRunStatusBriefResponseSchema,
      { ...body, answer: 'brief' },
    );
  }

  listCommands(runId: string, afterSeq = 0) {
    return this.call(
      'get',
      `api/runs/${encodeURIComponent(runId)}/commands`,
      listCommandsResponseSchema,
      undefined,
      { after_seq: afterSeq },
    );
  }

  ackCommand(commandId: string, body: { fencing_token: number }) {
    return this.call(
      'post',
      `api/commands/${encodeURIComponent(commandId)}/ack`,
      commandResponseSchema,
      body,
    );
  }

  commandStatus(
    commandId: string,
    body: {
      fencing_token: number;
      state: 'completed' | 'failed' | 'cancelled';
      exit_code?: number;
      message?: string;
    },
  ) {
    return this.call(
      'post',
      `api/commands/${encodeURIComponent(commandId)}/status`,
      commandResponseSchema,
      body,
    );
  }

  /** Downloads a bundle's bytes (the agent verifies the sha256 itself). */
  async downloadBundle(sha256: string): Promise<Uint8Array> {
    return (await this.#send({ method: 'GET', path: `api/bundles/${sha256}` })).body;
  }

  /** Sends one call through the transport; error answers and failures become {@link ApiError}s. */
  async #send(req: TransportRequest): Promise<TransportAnswer> {
    let answer: TransportAnswer;
    try {
      answer = await this.#transport.request(req);
    } catch (e) {
      if (e instanceof TransportError) throw unreachableError(this.url, e.reason, e);
      throw e;
    }
    if (answer.status >= 400) throw apiErrorOf(answer.status, answer.statusText, answer.json(), this.url);
    return answer;
  }

  private async call<S extends z.ZodType>(
    method: 'get' | 'post' | 'put',
    path: string,
    schema: S,
    body?: unknown,
    query?: Record<string, string | number | undefined>,
    bytes?: Uint8Array,
  ): Promise<z.infer<S>> {
    const answer = await this.#send({
      method: method.toUpperCase() as TransportRequest['method'],
      path,
      ...(body === undefined ? {} : { json: body }),
      ...(bytes ? { bytes } : {}),
      ...(query ? { query } : {}),
    });
    const parsed = schema.safeParse(answer.json());
    if (!parsed.success)
      throw new ApiError(answer.status, 'invalid-response', `unexpected answer from ${this.url}/${path}`);
    return parsed.data;
  }
}
