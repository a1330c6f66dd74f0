import ky, { type KyInstance } from 'ky';
import type { z } from 'zod';
import { LeaseError, LeaseRequestError } from './errors.js';
import { parseRetryAfter } from './retry-delay.js';
import { errorBodySchema } from './wire-schemas.js';

/** What one HTTP call to a lease endpoint came to; retry decisions are the caller's. */
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
}

const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** The one place that talks HTTP: bearer auth, JSON, zod-checked bodies, no retries of its own. */
export class LeaseHttp {
  readonly #ky: KyInstance;
  readonly #timeoutMs: number;

  constructor(opts: LeaseHttpOptions) {
    if (!opts.token && !opts.getToken) throw new LeaseError('lease-invalid-argument', 'LeaseClient needs a token or getToken');
    const getToken = opts.getToken ?? (() => opts.token as string);
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#ky = ky.create({
      prefixUrl: String(opts.baseUrl),
      retry: 0,
      throwHttpErrors: false,
      timeout: this.#timeoutMs,
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      hooks: {
        beforeRequest: [
          async (request) => {
            request.headers.set('authorization', `Bearer ${await getToken()}`);
          },
        ],
      },
    });
  }

  /**
   * POSTs `body` as JSON. Rejects only with `signal.reason` when `signal` aborts; everything else
   * comes back as a result.
   */
  async post<T>(
    path: string,
    body: unknown,
    schema: z.ZodType<T> | undefined,
    opts: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<LeaseCallResult<T>> {
    const timeout = Math.max(1, Math.min(this.#timeoutMs, Math.floor(opts.timeoutMs ?? this.#timeoutMs)));
    let response: Response;
    try {
      response = await this.#ky.post(path, { json: body, timeout, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (e) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const what = (e as Error)?.name === 'TimeoutError' ? 'timed out' : 'failed';
      return {
        kind: 'transient',
        error: new LeaseRequestError(`POST ${path} ${what}: ${(e as Error)?.message ?? String(e)}`, { cause: e }),
        retryAfterMs: undefined,
      };
    }
    const text = await response.text().catch(() => '');
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (response.ok) {
      if (!schema) return { kind: 'ok', body: json as T };
      const parsed = schema.safeParse(json);
      if (parsed.success) return { kind: 'ok', body: parsed.data };
      return {
        kind: 'fatal',
        error: new LeaseRequestError(`POST ${path} answered ${response.status} with an unexpected body`, {
          status: response.status,
          cause: parsed.error,
        }),
      };
    }
    const err = errorBodySchema.safeParse(json);
    const serverCode = err.success ? err.data.error.code : undefined;
    const message = err.success ? err.data.error.message : `HTTP ${response.status}`;
    if (response.status === 409) return { kind: 'conflict', serverCode, message };
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    const error = new LeaseRequestError(`POST ${path} answered ${response.status}: ${message}`, {
      status: response.status,
      ...(serverCode !== undefined ? { serverCode } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
    return TRANSIENT_STATUS.has(response.status) ? { kind: 'transient', error, retryAfterMs } : { kind: 'fatal', error };
  }
}

/** Resolves after `ms`, or rejects with `signal.reason` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function runPath(runId: string, action: 'claim' | 'heartbeat' | 'release'): string {
  return `api/runs/${encodeURIComponent(runId)}/${action}`;
}
