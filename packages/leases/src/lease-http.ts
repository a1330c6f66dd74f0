import {
  HttpTransport,
  TransportError,
  apiErrorOf,
  parseRetryAfter,
  type RetryOptions,
  type TransportAnswer,
  type TransportVia,
} from '@runt/protocol';
import type { z } from 'zod';
import { LeaseError, LeaseRequestError } from './errors.js';

/** What one HTTP call to a lease endpoint came to. */
export type LeaseCallResult<T> =
  | { kind: 'ok'; body: T }
  | { kind: 'conflict'; serverCode: string | undefined; message: string }
  | { kind: 'transient'; error: LeaseRequestError; retryAfterMs: number | undefined }
  | { kind: 'fatal'; error: LeaseRequestError };

export interface LeaseHttpOptions {
  baseUrl: string | URL;
  token?: string;
  getToken?: () => string | Promise<string>;
  fetch?: typeof globalThis.fetch;
  timeoutMs?: number;
  /** `node:http` keep-alive instead of `fetch` (see `HttpTransport`). */
  keepAlive?: boolean;
  /** Tried before HTTP on every attempt (an agent's link); see `HttpTransportOptions.via`. */
  via?: TransportVia;
}

/** Answers worth asking again: the server is busy, restarting or behind a flaky proxy. */
export const TRANSIENT_STATUSES: readonly number[] = [408, 425, 429, 500, 502, 503, 504];

/**
 * The lease endpoints over `@runt/protocol`'s `HttpTransport`: bearer auth, JSON, zod-checked
 * bodies, and each answer classified as ok / conflict (409) / transient / fatal.
 */
export class LeaseHttp {
  readonly #transport: HttpTransport;

  constructor(opts: LeaseHttpOptions) {
    if (!opts.token && !opts.getToken)
      throw new LeaseError('lease-invalid-argument', 'LeaseClient needs a token or getToken');
    this.#transport = new HttpTransport({
      url: opts.baseUrl,
      token: opts.getToken ?? (() => opts.token),
      timeoutMs: opts.timeoutMs ?? 10_000,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      keepAlive: opts.keepAlive === true,
      ...(opts.via ? { via: opts.via } : {}),
    });
  }

  /**
   * POSTs `body` as JSON, once, or with `retry` through the transport's retries (transient
   * statuses, network failures and timeouts). Rejects only with `signal.reason` when `signal`
   * aborts; everything else comes back as a result.
   */
  async post<T>(
    path: string,
    body: unknown,
    schema: z.ZodType<T> | undefined,
    opts: { signal?: AbortSignal; timeoutMs?: number; retry?: RetryOptions } = {},
  ): Promise<LeaseCallResult<T>> {
    const req = {
      method: 'POST' as const,
      path,
      json: body,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    };
    let answer: TransportAnswer;
    try {
      answer = opts.retry
        ? await this.#transport.request(req, {
            ...opts.retry,
            statuses: TRANSIENT_STATUSES,
            retryTimeouts: true,
          })
        : await this.#transport.send(req);
    } catch (e) {
      if (opts.signal?.aborted || !(e instanceof TransportError)) throw opts.signal?.reason ?? e;
      const what = e.kind === 'timeout' ? 'timed out' : 'failed';
      return {
        kind: 'transient',
        error: new LeaseRequestError(`POST ${path} ${what}: ${e.reason}`, { cause: e }),
        retryAfterMs: undefined,
      };
    }
    const json = answer.json();
    if (answer.status >= 200 && answer.status < 300) {
      if (!schema) return { kind: 'ok', body: json as T };
      const parsed = schema.safeParse(json);
      if (parsed.success) return { kind: 'ok', body: parsed.data };
      return {
        kind: 'fatal',
        error: new LeaseRequestError(`POST ${path} answered ${answer.status} with an unexpected body`, {
          status: answer.status,
          cause: parsed.error,
        }),
      };
    }
    const apiError = apiErrorOf(answer.status, answer.statusText, json, this.#transport.url);
    const serverCode = apiError.code === 'http-error' ? undefined : apiError.code;
    const message = serverCode === undefined ? `HTTP ${answer.status}` : apiError.message;
    if (answer.status === 409) return { kind: 'conflict', serverCode, message };
    const retryAfterMs = parseRetryAfter(answer.header('retry-after'));
    const error = new LeaseRequestError(`POST ${path} answered ${answer.status}: ${message}`, {
      status: answer.status,
      ...(serverCode !== undefined ? { serverCode } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
    return TRANSIENT_STATUSES.includes(answer.status)
      ? { kind: 'transient', error, retryAfterMs }
      : { kind: 'fatal', error };
  }
}

export function runPath(runId: string, action: 'claim' | 'heartbeat' | 'release'): string {
  return `api/runs/${encodeURIComponent(runId)}/${action}`;
}
