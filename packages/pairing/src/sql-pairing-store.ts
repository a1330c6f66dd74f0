import { randomUUID } from 'node:crypto';
import type { Database } from '@runt/sql';
import { generatePairingCode } from './generate-pairing-code.js';
import { hashPairingCode } from './hash-pairing-code.js';
import { normalizePairingCode } from './normalize-pairing-code.js';
import {
  PairingCodeRejectedError,
  PairingError,
  PairingRateLimitedError,
  isPairingError,
} from './pairing-error.js';
import {
  DEFAULT_ATTEMPT_LIMITS,
  type AttemptLimits,
  type PairingInfo,
  type PairingStore,
} from './pairing-store.js';

const DEFAULT_TTL_MS = 600_000;
const UNIQUE_VIOLATION = '23505';

interface CodeRow {
  id: string;
  created_by: string;
  expires_at: Date | string;
  redeemed_at: Date | string | null;
  redeemed_by: string | null;
  expired: boolean;
}

/**
 * A `PairingStore` over `@runt/sql` (PGlite or Postgres). It does not create its tables: run
 * `migrate(db, pairingMigrations)` first. Times (expiry, rate-limit windows) come from the
 * database clock, so several control-plane replicas agree. Redeem claims the code with one
 * conditional `update … where redeemed_at is null and expires_at > now() returning`, which row
 * locking makes single-winner on Postgres. The code is looked at first, so a valid code always
 * redeems; a wrong one is recorded per client address and per code prefix, and answered 429
 * (`PairingRateLimitedError`) instead of 404 while either is at its limit — no global lockout.
 *
 * @example
 * await migrate(db, pairingMigrations);
 * const store = createSqlPairingStore(db);
 * const { code } = await store.mint({ createdBy: 'admin' });
 * const token = await store.redeem({ code, clientAddress: '10.0.0.7' }, async (tx, { pairingId }) => {
 *   await tx.query('insert into workstations (id, pairing_id) values ($1, $2)', ['ws_1', pairingId]);
 *   return { workstationId: 'ws_1', result: 'rnt_ws_…' };
 * });
 */
export function createSqlPairingStore(
  db: Database,
  opts: { limits?: Partial<AttemptLimits> } = {},
): PairingStore {
  const limits = {
    perAddress: checkLimit('perAddress', opts.limits?.perAddress ?? DEFAULT_ATTEMPT_LIMITS.perAddress),
    perPrefix: checkLimit('perPrefix', opts.limits?.perPrefix ?? DEFAULT_ATTEMPT_LIMITS.perPrefix),
  };
  const keepMs = Math.max(limits.perAddress.windowMs, limits.perPrefix.windowMs);

  /**
   * Seconds until the oldest failure that keeps a scope at its limit ages out, or 0. `own`
   * failures of the caller's are already among the rows (a reservation), so they do not count.
   */
  async function waitFor(
    scope: { max: number; windowMs: number },
    column: 'client_address' | 'code_prefix',
    value: string,
    own = 0,
  ): Promise<number> {
    // The max-th newest failure inside the window: once it ages out, fewer than max remain.
    const r = await db.query<{ wait: number | string }>(
      `select extract(epoch from (failed_at + $1::float8 * interval '1 millisecond' - now())) as wait
         from pairing_attempts
        where ${column} = $3 and failed_at > now() - $1::float8 * interval '1 millisecond'
        order by failed_at desc offset $2::int limit 1`,
      [scope.windowMs, scope.max - 1 + own, value],
    );
    const wait = r.rows[0]?.wait;
    return wait === undefined ? 0 : Math.max(1, Math.ceil(Number(wait)));
  }

  /** Seconds the address (and, for a code guess, its prefix) must wait, or 0. */
  async function limitedFor(address: string, prefix: string | undefined, own = 0): Promise<number> {
    const [byAddress, byPrefix] = await Promise.all([
      waitFor(limits.perAddress, 'client_address', address, own),
      prefix === undefined ? 0 : waitFor(limits.perPrefix, 'code_prefix', prefix, own),
    ]);
    return Math.max(byAddress, byPrefix);
  }

  /**
   * Spends one guess of the address (and prefix) budget, or answers how long to wait. The
   * failure is recorded first and counted after, so guesses sent at once (to one replica or
   * spread over several: the rows are in the shared database) are never more than `max`
   * accepted in a window; one over the limit takes its row back (a 429 is not recorded).
   */
  async function reserve(
    address: string,
    prefix: string | undefined,
  ): Promise<{ id: string } | { wait: number }> {
    const r = await db.query<{ id: string | number }>(
      'insert into pairing_attempts (client_address, code_prefix) values ($1, $2) returning id',
      [address, prefix ?? null],
    );
    const id = String(r.rows[0]!.id);
    if ((await limitedFor(address, prefix, 1)) === 0) return { id };
    await giveBack(id);
    return { wait: Math.max(1, await limitedFor(address, prefix)) };
  }

  async function giveBack(id: string): Promise<void> {
    await db.query('delete from pairing_attempts where id = $1', [id]);
  }

  async function prune(): Promise<void> {
    await db.query(
      "delete from pairing_attempts where failed_at < now() - $1::float8 * interval '1 millisecond'",
      [keepMs],
    );
  }

  /** A wrong guess: 429 while its address or prefix is at the limit (not recorded), else recorded and 404. */
  async function failed(address: string, prefix: string | undefined): Promise<never> {
    const spent = await reserve(address, prefix);
    if ('wait' in spent) throw new PairingRateLimitedError(spent.wait);
    await prune();
    throw new PairingCodeRejectedError();
  }

  return {
    async mint({ createdBy, ttlMs = DEFAULT_TTL_MS }) {
      if (typeof createdBy !== 'string' || createdBy === '') {
        throw new PairingError('invalid-argument', 'createdBy must be a non-empty string');
      }
      if (!Number.isFinite(ttlMs) || ttlMs <= 0)
        throw new PairingError('invalid-argument', 'ttlMs must be a positive number');
      for (let attempt = 1; ; attempt++) {
        const code = generatePairingCode();
        const id = randomUUID();
        try {
          const r = await db.query<{ expires_at: Date | string }>(
            `insert into pairing_codes (id, code_hash, created_by, expires_at)
             values ($1, $2, $3, now() + $4::float8 * interval '1 millisecond') returning expires_at`,
            [id, hashPairingCode(code), createdBy, ttlMs],
          );
          return { id, code, expiresAt: new Date(r.rows[0]!.expires_at) };
        } catch (e) {
          // A hash collision with an earlier code (1 in ~2^59 per pair): draw again.
          if ((e as { code?: unknown }).code === UNIQUE_VIOLATION && attempt < 5) continue;
          throw e;
        }
      }
    },

    async redeem(input, issue) {
      const address = String(input.clientAddress ?? '');
      const canonical = normalizePairingCode(input.code);
      const prefix = canonical?.slice(0, 4);
      // The code is looked at first: a valid code always redeems, whoever flooded before.
      if (canonical === undefined) return failed(address, prefix);
      try {
        return await db.transaction(async (tx) => {
          const claimed = await tx.query<{ id: string }>(
            `update pairing_codes set redeemed_at = now()
              where code_hash = $1 and redeemed_at is null and expires_at > now()
              returning id`,
            [hashPairingCode(canonical)],
          );
          const row = claimed.rows[0];
          if (row === undefined) throw new PairingCodeRejectedError();
          const { workstationId, result } = await issue(tx, { pairingId: row.id });
          await tx.query('update pairing_codes set redeemed_by = $2 where id = $1', [row.id, workstationId]);
          return result;
        });
      } catch (e) {
        if (isPairingError(e, 'pairing-code-rejected')) return failed(address, prefix);
        throw e;
      }
    },

    async limitGuesses(clientAddress, check) {
      const address = String(clientAddress ?? '');
      // Spent up front (see reserve), given back when the guess was right or could not be checked.
      const spent = await reserve(address, undefined);
      if ('wait' in spent) throw new PairingRateLimitedError(spent.wait);
      let out: Awaited<ReturnType<typeof check>>;
      try {
        out = await check();
      } catch (e) {
        await giveBack(spent.id);
        throw e;
      }
      if (out === undefined) await prune();
      else await giveBack(spent.id);
      return out;
    },

    async get(id) {
      const r = await db.query<CodeRow>(
        `select id, created_by, expires_at, redeemed_at, redeemed_by,
                (redeemed_at is null and expires_at <= now()) as expired
           from pairing_codes where id = $1`,
        [id],
      );
      const row = r.rows[0];
      if (row === undefined) return undefined;
      const info: PairingInfo = {
        id: row.id,
        createdBy: row.created_by,
        expiresAt: new Date(row.expires_at),
        expired: row.expired === true,
      };
      if (row.redeemed_at !== null) info.redeemedAt = new Date(row.redeemed_at);
      if (row.redeemed_by !== null) info.redeemedBy = row.redeemed_by;
      return info;
    },
  };
}

function checkLimit(name: string, l: { max: number; windowMs: number }): { max: number; windowMs: number } {
  if (!Number.isInteger(l.max) || l.max < 1 || !Number.isFinite(l.windowMs) || l.windowMs <= 0) {
    throw new PairingError(
      'invalid-argument',
      `limits.${name} needs an integer max ≥ 1 and a positive windowMs`,
    );
  }
  return { max: l.max, windowMs: l.windowMs };
}
