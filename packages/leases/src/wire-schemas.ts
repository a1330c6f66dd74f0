import { leaseMsSchema } from '@runt/protocol';
import { z } from 'zod';

/**
 * Bodies of the control plane's lease endpoints, as `LeaseClient` sends and expects them. A
 * control plane can validate requests with the same schemas. Extra fields are allowed both ways.
 * `lease_ms` is `@runt/protocol`'s `leaseMsSchema` (1 s to 10 min), the one definition.
 *
 * @example
 * const body = claimRequestSchema.parse(await c.req.json()); // { runner_id, lease_ms }
 */
export const claimRequestSchema = z.object({
  runner_id: z.string().min(1).max(512),
  lease_ms: leaseMsSchema,
});

/** `POST /api/runs/:id/claim` → 200/201. `run` is the control plane's run object, passed through. */
export const claimResponseSchema = z.object({
  fencing_token: z.number().int().positive(),
  expires_at: z.iso.datetime({ offset: true }),
  run: z.unknown().optional(),
});

/** `POST /api/runs/:id/heartbeat`. `runner_id` is sent too; the control plane may use it or the caller's identity. */
export const heartbeatRequestSchema = z.object({
  fencing_token: z.number().int().positive(),
  lease_ms: leaseMsSchema,
  runner_id: z.string().min(1).max(512).optional(),
});

/** `POST /api/runs/:id/heartbeat` → 200. */
export const heartbeatResponseSchema = z.object({
  expires_at: z.iso.datetime({ offset: true }),
});

/** The whole claim answer as `LeaseClient` keeps it: the checked fields plus any others the control plane sent. */
export type ClaimAnswer = z.infer<typeof claimResponseSchema> & Record<string, unknown>;
/** The whole heartbeat answer as the renew loop hands it to `onRenew` (e.g. runt's `cancel_requested`). */
export type HeartbeatAnswer = z.infer<typeof heartbeatResponseSchema> & Record<string, unknown>;

/** The answer schemas `LeaseClient` parses with: same checks, extra fields kept instead of stripped. */
export const claimAnswerSchema = claimResponseSchema.loose() as unknown as z.ZodType<ClaimAnswer>;
export const heartbeatAnswerSchema = heartbeatResponseSchema.loose() as unknown as z.ZodType<HeartbeatAnswer>;

/** `POST /api/runs/:id/release` → any 2xx (body ignored); 409 means "not held with that token any more". */
export const releaseRequestSchema = z.object({
  fencing_token: z.number().int().positive(),
  runner_id: z.string().min(1).max(512).optional(),
});
