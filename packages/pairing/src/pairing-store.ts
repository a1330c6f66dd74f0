import type { Queryable } from '@runt/sql';

/**
 * Failed-redeem budgets. Only failures count; a success costs nothing, and a valid code always
 * redeems (even from an address at its limit): an outsider can never lock operators out.
 */
export interface AttemptLimits {
  /** Per client address (default 10 failures in 10 minutes). */
  perAddress: { max: number; windowMs: number };
  /**
   * Per code prefix — the first group of 4 symbols a guess names (default 20 failures in 10
   * minutes): slows a distributed guesser without a global lockout, since nobody can aim at a
   * live code's prefix without knowing it.
   */
  perPrefix?: { max: number; windowMs: number };
  /** @deprecated Ignored: a global limit let anyone block every operator (issue 8). Use `perPrefix`. */
  overall?: { max: number; windowMs: number };
}

export const DEFAULT_ATTEMPT_LIMITS: Required<Omit<AttemptLimits, 'overall'>> = Object.freeze({
  perAddress: Object.freeze({ max: 10, windowMs: 600_000 }),
  perPrefix: Object.freeze({ max: 20, windowMs: 600_000 }),
});

/** What `PairingStore.get` tells about a code (never the code itself). */
export interface PairingInfo {
  id: string;
  createdBy: string;
  expiresAt: Date;
  redeemedAt?: Date;
  /** The workstation id that `issue` returned when the code was redeemed. */
  redeemedBy?: string;
  /** True when the code was never redeemed and its expiry (by the database clock) has passed. */
  expired: boolean;
}

/** Called inside the redeem transaction to mint the workstation's credential. */
export type IssueCredential<T> = (
  tx: Queryable,
  ctx: { pairingId: string },
) => Promise<{ workstationId: string; result: T }>;

export interface PairingStore {
  /** Mints a single-use code (default 10 minutes); only its hash is stored. */
  mint(opts: { createdBy: string; ttlMs?: number }): Promise<{ id: string; code: string; expiresAt: Date }>;
  /**
   * One transaction: check+consume the code (single use; expiry judged by the DATABASE clock
   * now()), then call `issue(tx)` in the same transaction to mint the credential; commit. Two
   * concurrent redeems of one code → exactly one succeeds. When `issue` throws, nothing is
   * committed and the code stays usable.
   */
  redeem<T>(input: { code: string; clientAddress: string }, issue: IssueCredential<T>): Promise<T>;
  get(id: string): Promise<PairingInfo | undefined>;
  /**
   * Spends the same failed-guess budget as `redeem` on another secret guess (the panel's
   * sign-in): throws `PairingRateLimitedError` when `clientAddress` is at its limit, else runs
   * `check` and records a failure when it answers `undefined`.
   */
  limitGuesses<T>(clientAddress: string, check: () => Promise<T | undefined>): Promise<T | undefined>;
}
