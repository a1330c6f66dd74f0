import { errorBodySchema, parseRetryAfter } from '@runt/protocol';
import { redactSecrets } from '@runt/transport-auth';
import ky from 'ky';
import { z } from 'zod';
import { formatPairingCode } from './format-pairing-code.js';
import { normalizePairingCode } from './normalize-pairing-code.js';
import { PairingCodeRejectedError, PairingError, PairingRateLimitedError } from './pairing-error.js';

const TIMEOUT_MS = 15_000;
const DEFAULT_RETRY_AFTER_S = 60;

const RedeemAnswer = z.object({
  credential: z.object({ token: z.string().min(1), credential_id: z.string().min(1) }),
  workstation: z.object({ id: z.string().min(1), display_name: z.string() }),
});

export type RedeemedPairing = z.infer<typeof RedeemAnswer>;

/**
 * Redeems a pairing code at a control plane: `POST {url}/api/workstations/pairing-codes/redeem`
 * once (no retries: the code is single use), 15 s timeout. Maps the answers to errors a CLI can
 * print as one line: 404 → `PairingCodeRejectedError`, 429 → `PairingRateLimitedError` (with
 * `Retry-After`), no answer → `PairingError('unreachable')` "cannot reach <url>: <reason>",
 * any other failure → `PairingError('server-error')` with the server's message. A code that
 * cannot be valid is rejected before any request. Aborting `signal` rejects with its reason.
 *
 * @example
 * const { credential, workstation } = await redeemPairingCode('https://runt.example.com', 'K7QM-3XZA-RT9C', { hostname: os.hostname() });
 */
export async function redeemPairingCode(
  url: string,
  code: string,
  info: { display_name?: string; hostname?: string },
  opts: { signal?: AbortSignal } = {},
): Promise<RedeemedPairing> {
  const canonical = normalizePairingCode(code);
  if (canonical === undefined) throw new PairingCodeRejectedError();
  const base = parseBase(url);
  const endpoint = `${base}/api/workstations/pairing-codes/redeem`;

  let res: Response;
  try {
    res = await ky.post(endpoint, {
      json: { code: formatPairingCode(canonical), display_name: info.display_name, hostname: info.hostname },
      retry: 0,
      timeout: TIMEOUT_MS,
      throwHttpErrors: false,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (e) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? e;
    throw new PairingError('unreachable', `cannot reach ${base}: ${reasonOf(e)}`, { cause: e });
  }

  if (res.ok) {
    const body = await res.json().catch(() => undefined);
    const parsed = RedeemAnswer.safeParse(body);
    if (!parsed.success) {
      throw new PairingError(
        'server-error',
        `unexpected answer from ${base} (HTTP ${res.status}): not a pairing result`,
        {
          status: res.status,
        },
      );
    }
    return parsed.data;
  }
  if (res.status === 404) {
    await res.body?.cancel();
    throw new PairingCodeRejectedError({ status: 404 });
  }
  if (res.status === 429) {
    await res.body?.cancel();
    throw new PairingRateLimitedError(retryAfterSeconds(res.headers.get('retry-after')), { status: 429 });
  }
  const body = errorBodySchema.safeParse(await res.json().catch(() => undefined));
  const message = body.success
    ? oneLine(redactSecrets(body.data.error.message))
    : `${base} answered HTTP ${res.status}`;
  throw new PairingError('server-error', message, { status: res.status });
}

function parseBase(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new PairingError('unreachable', `cannot reach ${oneLine(redactSecrets(url))}: not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new PairingError(
      'unreachable',
      `cannot reach ${u.protocol}//${u.host}: only http and https URLs are supported`,
    );
  }
  // Credentials in the URL would end up in messages; they are never needed here.
  u.username = '';
  u.password = '';
  u.search = '';
  u.hash = '';
  return u.toString().replace(/\/+$/, '');
}

function reasonOf(e: unknown): string {
  if (e instanceof Error && e.name === 'TimeoutError') return `no answer within ${TIMEOUT_MS / 1000} s`;
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const text =
    typeof cause?.message === 'string' && cause.message !== ''
      ? cause.message
      : typeof cause?.code === 'string'
        ? cause.code
        : e instanceof Error
          ? e.message
          : String(e);
  return oneLine(redactSecrets(text));
}

/** Seconds to wait from a 429's `Retry-After` (protocol's one parser), at least 1. */
function retryAfterSeconds(value: string | null): number {
  const ms = parseRetryAfter(value);
  return ms === undefined ? DEFAULT_RETRY_AFTER_S : Math.max(1, Math.ceil(ms / 1000));
}

function oneLine(s: string): string {
  return s.replace(/\s*\r?\n\s*/g, ' ').trim();
}
