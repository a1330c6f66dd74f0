export {
  LeaseError,
  LeaseConflictError,
  LeaseLostError,
  LeaseRequestError,
  isLeaseError,
  type LeaseErrorCode,
  type LeaseConflictReason,
  type LeaseLostReason,
} from './errors.js';
export { leaseMigrations } from './migrations.js';
export type { LeaseRecord } from './lease-record.js';
export { assertFenced } from './assert-fenced.js';
export {
  createSqlLeaseStore,
  leaseSql,
  releaseLease,
  type LeaseStore,
  type LeaseGrant,
  type ExpiredLeaseOptions,
  type LeaseSqlRefs,
} from './lease-store.js';
export {
  LeaseClient,
  type LeaseClientOptions,
  type ClaimOptions,
  type RenewOptions,
  type ReleaseOptions,
} from './lease-client.js';
export { claimedLeaseFrom, type ClaimedLeaseFromOptions } from './held-lease.js';
export type { ClaimedLease, HeldLease, HeldLeaseState, HoldOptions } from './held-lease.js';
export {
  claimRequestSchema,
  claimResponseSchema,
  heartbeatRequestSchema,
  heartbeatResponseSchema,
  releaseRequestSchema,
  type ClaimAnswer,
  type HeartbeatAnswer,
} from './wire-schemas.js';
