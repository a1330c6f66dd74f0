import http from 'node:http';
import https from 'node:https';
import ky, { HTTPError, type KyInstance } from 'ky';
import { bearerHook } from '@runt/transport-auth';
import type { z } from 'zod';
import { ApiError } from './errors.js';
import {
  errorBodySchema,
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
  heartbeatRunResponseSchema,
  listCommandsResponseSchema,
  listEventsResponseSchema,
  listRunsResponseSchema,
  okResponseSchema,
  reportRunStatusResponseSchema,
  runResponseSchema,
  type QueueCommandRequest,
  type ReportRunStatusRequest,
  type RunEventInput,
  type RunStatus,
  type SubmitRunRequest,
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
   * Send JSON calls with `node:http` over keep-alive connections instead of `fetch` (same
   * retries, errors and validation; a fraction of the per-request cost). Bundles still go
   * through `fetch`. For long-running Node callers with many small calls (the agent).
   */
  nodeHttp?: boolean;
}

/** Answers retried like ky does: these statuses, `Retry-After` honoured on 429 and 503. */
const RETRY_STATUSES = new Set([429, 502, 503, 504]);
const RETRY_AFTER_STATUSES = new Set([429, 503]);
const MAX_RETRY_AFTER_MS = 60_000;

/** Exponential backoff with full jitter, capped; ky waits `Retry-After` instead when the server sends one. */
export function backoffDelay(attempt: number, baseMs = 250, capMs = 30_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/**
 * A typed client for the control plane's HTTP API. Every answer is validated with the zod
 * schemas of this package; error answers become {@link ApiError}s with the server's code and
 * message, and network failures an `ApiError` with code `unreachable`. 429 and 503 are retried
 * honouring `Retry-After`, then with exponential backoff and jitter.
 *
 * @example
 * const cp = new ControlPlaneClient({ url: 'http://127.0.0.1:8787', token: process.env.RUNT_ADMIN_TOKEN });
 * const { pairing, connect_command } = await cp.mintPairingCode();
 */
export class ControlPlaneClient {
  readonly url: string;
  private readonly http: KyInstance;
  private readonly node: { agent: http.Agent; retries: number; timeoutMs: number; token: ControlPlaneClientOptions['token'] } | undefined;

  constructor(opts: ControlPlaneClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    const retries = opts.retries ?? 3;
    if (opts.nodeHttp && !opts.fetch) {
      const Agent = this.url.startsWith('https:') ? https.Agent : http.Agent;
      this.node = { agent: new Agent({ keepAlive: true, maxSockets: 64 }), retries, timeoutMs: opts.timeoutMs ?? 15_000, token: opts.token };
    }
    this.http = ky.create({
      prefixUrl: this.url,
      timeout: opts.timeoutMs ?? 15_000,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      retry: {
        limit: retries,
        methods: ['get', 'post', 'put', 'delete', 'head'],
        statusCodes: [429, 502, 503, 504],
        afterStatusCodes: [413, 429, 503],
        maxRetryAfter: 60_000,
        delay: (attempt) => backoffDelay(attempt),
      },
      hooks: opts.token === undefined ? {} : { beforeRequest: [bearerHook(opts.token)] },
    });
  }

  /** Mints a one-time pairing code (admin). */
  mintPairingCode(body: MintPairingCodeRequest = {}) {
    return this.call('post', 'api/workstations/pairing-codes', mintPairingCodeResponseSchema, body);
  }

  /** Where a pairing code stands: pending, redeemed, registered or expired (admin). */
  getPairingCode(id: string) {
    return this.call('get', `api/workstations/pairing-codes/${encodeURIComponent(id)}`, pairingCodeStatusResponseSchema);
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

  /** Revokes a credential at once (admin). */
  revokeCredential(id: string) {
    return this.call('post', `api/workstations/credentials/${encodeURIComponent(id)}/revoke`, revokeCredentialResponseSchema);
  }

  /** Drains a workstation (admin): no new runs; its agent finishes the runs it holds and exits. */
  drainWorkstation(id: string) {
    return this.call('post', `api/workstations/${encodeURIComponent(id)}/drain`, registerWorkstationResponseSchema);
  }

  // ---- runs (admin) ----

  /** Submits a run; with `idempotency_key` a retried submit returns the same run. */
  submitRun(body: SubmitRunRequest) {
    return this.call('post', 'api/runs', runResponseSchema, body);
  }

  listRuns(query: { status?: RunStatus; workstation_id?: string; runtime?: string; limit?: number; cursor?: string } = {}) {
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
    return this.call('get', `api/runs/${encodeURIComponent(runId)}/events`, listEventsResponseSchema, undefined, query);
  }

  /** Uploads a bundle (tar or tar.gz bytes); the control plane checks the sha256. Idempotent. */
  async uploadBundle(sha256: string, bytes: Uint8Array) {
    return this.call('put', `api/bundles/${sha256}`, bundleResponseSchema, undefined, undefined, bytes);
  }

  // ---- runs (workstation: the agent) ----

  /** The polling path: runs offered to this workstation (used while the link is down). */
  offeredRuns(workstationId: string) {
    return this.call('get', `api/workstations/${encodeURIComponent(workstationId)}/runs`, listRunsResponseSchema, undefined, { status: 'offered' });
  }

  claimRun(runId: string, body: { runner_id: string; lease_ms: number }) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/claim`, claimRunResponseSchema, body);
  }

  heartbeatRun(runId: string, body: { fencing_token: number; lease_ms: number }) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/heartbeat`, heartbeatRunResponseSchema, body);
  }

  releaseRun(runId: string, body: { fencing_token: number }) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/release`, okResponseSchema, body);
  }

  appendEvents(runId: string, body: { fencing_token: number; events: RunEventInput[] }) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/events`, appendEventsResponseSchema, body);
  }

  reportStatus(runId: string, body: ReportRunStatusRequest) {
    return this.call('post', `api/runs/${encodeURIComponent(runId)}/status`, reportRunStatusResponseSchema, body);
  }

  listCommands(runId: string, afterSeq = 0) {
    return this.call('get', `api/runs/${encodeURIComponent(runId)}/commands`, listCommandsResponseSchema, undefined, { after_seq: afterSeq });
  }

  ackCommand(commandId: string, body: { fencing_token: number }) {
    return this.call('post', `api/commands/${encodeURIComponent(commandId)}/ack`, commandResponseSchema, body);
  }

  commandStatus(commandId: string, body: { fencing_token: number; state: 'completed' | 'failed' | 'cancelled'; exit_code?: number; message?: string }) {
    return this.call('post', `api/commands/${encodeURIComponent(commandId)}/status`, commandResponseSchema, body);
  }

  /** Downloads a bundle's bytes (the agent verifies the sha256 itself). */
  async downloadBundle(sha256: string): Promise<Uint8Array> {
    try {
      const res = await this.http(`api/bundles/${sha256}`, { method: 'get' });
      return new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw await toApiError(e, this.url);
    }
  }

  /** {@link call} over `node:http`: the same retries (network errors, 429/502/503/504, `Retry-After`), errors and validation as the ky path. */
  private async callNode<S extends z.ZodType>(
    node: NonNullable<ControlPlaneClient['node']>,
    method: 'get' | 'post' | 'put',
    path: string,
    schema: S,
    body: unknown,
    searchParams: Record<string, string | number> | undefined,
  ): Promise<z.infer<S>> {
    const url = new URL(`${this.url}/${path}`);
    for (const [k, v] of Object.entries(searchParams ?? {})) url.searchParams.set(k, String(v));
    const payload = body === undefined ? undefined : JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      const token = typeof node.token === 'function' ? node.token() : node.token;
      let res: NodeAnswer;
      try {
        res = await sendNode(node.agent, method, url, token, payload, node.timeoutMs);
      } catch (e) {
        const err = e as { name?: string; code?: string; message?: string };
        if (err.name === 'TimeoutError') throw new ApiError(0, 'unreachable', `cannot reach ${this.url}: timed out`, undefined, { cause: e });
        if (attempt <= node.retries) {
          await new Promise((r) => setTimeout(r, backoffDelay(attempt)));
          continue;
        }
        throw new ApiError(0, 'unreachable', `cannot reach ${this.url}: ${err.code ?? err.message ?? String(e)}`, undefined, { cause: e });
      }
      if (RETRY_STATUSES.has(res.status) && attempt <= node.retries) {
        const after = RETRY_AFTER_STATUSES.has(res.status) ? retryAfterMs(res.retryAfter) : undefined;
        if (after === undefined || after <= MAX_RETRY_AFTER_MS) {
          await new Promise((r) => setTimeout(r, after ?? backoffDelay(attempt)));
          continue;
        }
      }
      const json = parseJson(res.text);
      if (res.status >= 400) {
        const parsed = errorBodySchema.safeParse(json);
        if (parsed.success) {
          const { code, message, details } = parsed.data.error;
          throw new ApiError(res.status, code, message, details);
        }
        throw new ApiError(res.status, 'http-error', `${this.url} answered ${res.status} ${res.statusText}`.trim());
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) throw new ApiError(res.status, 'invalid-response', `unexpected answer from ${this.url}/${path}`);
      return parsed.data;
    }
  }

  private async call<S extends z.ZodType>(
    method: 'get' | 'post' | 'put',
    path: string,
    schema: S,
    body?: unknown,
    query?: Record<string, string | number | undefined>,
    bytes?: Uint8Array,
  ): Promise<z.infer<S>> {
    let res: Response;
    const searchParams = query
      ? Object.fromEntries(Object.entries(query).filter((e): e is [string, string | number] => e[1] !== undefined))
      : undefined;
    if (this.node && !bytes) return this.callNode(this.node, method, path, schema, body, searchParams);
    try {
      res = await this.http(path, {
        method,
        ...(body === undefined ? {} : { json: body }),
        ...(bytes ? { body: bytes, headers: { 'content-type': 'application/octet-stream' } } : {}),
        ...(searchParams ? { searchParams } : {}),
      });
    } catch (e) {
      throw await toApiError(e, this.url);
    }
    const parsed = schema.safeParse(await res.json().catch(() => undefined));
    if (!parsed.success) throw new ApiError(res.status, 'invalid-response', `unexpected answer from ${this.url}/${path}`);
    return parsed.data;
  }
}

interface NodeAnswer {
  status: number;
  statusText: string;
  retryAfter: string | undefined;
  text: string;
}

function sendNode(agent: http.Agent, method: string, url: URL, token: string | undefined, payload: string | undefined, timeoutMs: number): Promise<NodeAnswer> {
  const send = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { accept: 'application/json' };
    if (token !== undefined && token !== '') headers.authorization = `Bearer ${token}`;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    const req = send(url, { method: method.toUpperCase(), agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const retryAfter = res.headers['retry-after'];
        resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, text: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })));
    req.on('error', reject);
    req.end(payload);
  });
}

function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/** Turns a ky/fetch failure into an {@link ApiError} with a one-line message. */
export async function toApiError(e: unknown, url: string): Promise<ApiError> {
  if (e instanceof HTTPError) {
    const parsed = errorBodySchema.safeParse(await e.response.json().catch(() => undefined));
    if (parsed.success) {
      const { code, message, details } = parsed.data.error;
      return new ApiError(e.response.status, code, message, details);
    }
    return new ApiError(e.response.status, 'http-error', `${url} answered ${e.response.status} ${e.response.statusText}`.trim());
  }
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError') return new ApiError(0, 'unreachable', `cannot reach ${url}: timed out`, undefined, { cause: e });
  const reason = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
  return new ApiError(0, 'unreachable', `cannot reach ${url}: ${reason}`, undefined, { cause: e });
}
