import { z } from 'zod';

/**
 * The one definition of a run lease's length on the wire (`lease_ms` of `POST /api/runs/:id/claim`
 * and `/heartbeat`): what the control plane accepts, what `@runt/leases`' client sends and what
 * the agent may be configured with. 1 s to 10 min; 30 s by default.
 *
 * A holder that renews with `@runt/leases` (`LeaseClient.hold`) renews every `max(lease/3, 1 s)`
 * and needs two renewals per lease, so it holds leases of at least {@link MIN_HELD_LEASE_MS}.
 */
export const LEASE_MS_MIN = 1_000;
export const LEASE_MS_MAX = 600_000;
export const LEASE_MS_DEFAULT = 30_000;
/** Shortest lease a renew loop with the default 1 s minimum interval can hold (two renewals per lease). */
export const MIN_HELD_LEASE_MS = 2_000;

/**
 * `lease_ms` as the control plane validates it.
 *
 * @example
 * leaseMsSchema.parse(30_000); // 30000
 */
export const leaseMsSchema = z.number().int().min(LEASE_MS_MIN).max(LEASE_MS_MAX);
