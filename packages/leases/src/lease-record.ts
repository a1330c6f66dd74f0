import { LeaseError } from './errors.js';

/** One row of the `leases` table as the store returns it. */
export interface LeaseRecord {
  resource: string;
  /** Current holder, or `null` once released or swept (the row and its token are kept). */
  holder: string | null;
  /** Increases on every successful claim of the resource; never reused, also across release. */
  fencingToken: number;
  /** When the lease runs out by the database clock (for a released lease: when it ended). */
  expiresAt: Date;
  /** When the current (or last) holder claimed it with this token. */
  acquiredAt: Date;
  /** Last successful renewal, `null` when never renewed since the claim. */
  renewedAt: Date | null;
}

/** The columns every store query returns, in `LeaseRecord` order. */
export const LEASE_COLUMNS = 'resource, holder, fencing_token, expires_at, acquired_at, renewed_at';

export interface LeaseRow {
  resource: string;
  holder: string | null;
  fencing_token: number | string | bigint;
  expires_at: Date | string;
  acquired_at: Date | string;
  renewed_at: Date | string | null;
}

export function toLeaseRecord(row: LeaseRow): LeaseRecord {
  return {
    resource: row.resource,
    holder: row.holder,
    fencingToken: Number(row.fencing_token),
    expiresAt: new Date(row.expires_at),
    acquiredAt: new Date(row.acquired_at),
    renewedAt: row.renewed_at === null ? null : new Date(row.renewed_at),
  };
}

export function requireText(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 512) {
    throw new LeaseError(
      'lease-invalid-argument',
      `${name} must be a non-empty string of at most 512 characters`,
    );
  }
  return value;
}

/**
 * Longest lease the SQL store can hold: 24 days (fits a signed 32-bit millisecond timer). A
 * bound of the mechanism, not of runt's wire: the client checks `lease_ms` against
 * `LEASE_MS_MIN`..`LEASE_MS_MAX` of `@runt/protocol`, the one definition.
 */
export const MAX_LEASE_MS = 2_147_483_647;

export function requireLeaseMs(name: string, value: unknown, min = 1, max = MAX_LEASE_MS): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new LeaseError(
      'lease-invalid-argument',
      `${name} must be an integer between ${min} and ${max} (ms)`,
    );
  }
  return value;
}

export function requireToken(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new LeaseError('lease-invalid-argument', 'fencingToken must be a positive integer');
  }
  return value;
}
