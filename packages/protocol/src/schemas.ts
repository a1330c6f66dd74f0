import { z } from 'zod';

/** `{ error: { code, message, details? } }`: the one error shape of the API. */
export const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

const labelKey = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9._/-]{0,62}[a-z0-9])?$/i,
    'label keys are 1-64 letters, digits, ".", "_", "/" or "-"',
  );
export const labelsSchema = z.record(labelKey, z.string().max(256));
export const runtimeNameSchema = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,31}$/, 'runtime names are lowercase words');
const displayName = z.string().trim().min(1).max(200);

// ---- pairing -------------------------------------------------------------------------------

export const mintPairingCodeRequestSchema = z.object({
  /** Lifetime of the code, 1 minute to 24 hours (default 10 minutes). */
  ttl_seconds: z.number().int().min(60).max(86_400).optional(),
});
export type MintPairingCodeRequest = z.infer<typeof mintPairingCodeRequestSchema>;

export const pairingCodeSchema = z.object({
  id: z.string(),
  code: z.string(),
  expires_at: z.string(),
});
export const mintPairingCodeResponseSchema = z.object({
  pairing: pairingCodeSchema,
  connect_command: z.string(),
});
export type MintPairingCodeResponse = z.infer<typeof mintPairingCodeResponseSchema>;

export const pairingStatusSchema = z.enum(['pending', 'redeemed', 'registered', 'expired']);
export type PairingStatus = z.infer<typeof pairingStatusSchema>;
export const pairingCodeStatusResponseSchema = z.object({
  pairing: z.object({
    id: z.string(),
    status: pairingStatusSchema,
    expires_at: z.string(),
    workstation_id: z.string().nullable(),
  }),
});
export type PairingCodeStatusResponse = z.infer<typeof pairingCodeStatusResponseSchema>;

export const redeemPairingCodeRequestSchema = z.object({
  code: z.string().max(64),
  display_name: displayName.optional(),
  hostname: z.string().trim().max(255).optional(),
});
export type RedeemPairingCodeRequest = z.infer<typeof redeemPairingCodeRequestSchema>;

export const redeemPairingCodeResponseSchema = z.object({
  /** Always true on success; older clients (the seed system's agent) check it. */
  ok: z.literal(true),
  pairing: z.object({ id: z.string() }),
  credential: z.object({ token: z.string(), credential_id: z.string() }),
  workstation: z.object({ id: z.string(), display_name: z.string() }),
});
export type RedeemPairingCodeResponse = z.infer<typeof redeemPairingCodeResponseSchema>;

// ---- workstations --------------------------------------------------------------------------

/** What `connect` (once, `listening:false`) and the agent (heartbeats, `listening:true`) send. */
export const registerWorkstationRequestSchema = z.object({
  display_name: displayName,
  hostname: z.string().trim().max(255).optional(),
  cpu_count: z.number().int().min(1).max(4096).default(1),
  memory_bytes: z.number().int().nonnegative().optional(),
  max_runs: z.number().int().min(0).max(10_000).optional(),
  /**
   * Runs the agent takes ahead of a free slot (`--prefetch`): claimed, journaled and waiting
   * for one of its `max_runs` slots, as graphile-worker's local queue. The scheduler offers up to
   * `max_runs + prefetch` runs at once. 0 (the default): none ahead.
   */
  prefetch: z.number().int().min(0).max(10_000).optional(),
  runtimes: z.array(runtimeNameSchema).max(32).default([]),
  labels: labelsSchema.optional(),
  agent_version: z.string().min(1).max(64).default('unknown'),
  /** Whether the sender takes runs; a body that does not say so is not offered any. */
  listening: z.boolean().default(false),
});
export type RegisterWorkstationRequest = z.infer<typeof registerWorkstationRequestSchema>;

const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * What `POST /api/workstations` accepts on the wire: the schema above, written in snake_case or
 * camelCase, with unknown fields ignored and missing ones defaulted. Older agents (the seed
 * system's) send `runtime` (one name) instead of `runtimes` and no `agent_version`/`listening`.
 */
export const registerWorkstationBodySchema = z.preprocess((body) => {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return body;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) out[snakeCase(key)] ??= value;
  if (
    out.runtimes === undefined &&
    typeof out.runtime === 'string' &&
    runtimeNameSchema.safeParse(out.runtime).success
  )
    out.runtimes = [out.runtime];
  if (out.display_name === undefined)
    out.display_name =
      typeof out.hostname === 'string' && out.hostname.trim() ? out.hostname.split('.')[0] : 'workstation';
  return out;
}, registerWorkstationRequestSchema);

export const workstationStatusSchema = z.enum(['online', 'offline', 'draining', 'revoked']);
export type WorkstationStatus = z.infer<typeof workstationStatusSchema>;

export const workstationSchema = z.object({
  id: z.string(),
  display_name: z.string(),
  hostname: z.string().nullable(),
  status: workstationStatusSchema,
  listening: z.boolean(),
  last_seen_at: z.string().nullable(),
  cpu_count: z.number().nullable(),
  memory_bytes: z.number().nullable(),
  max_runs: z.number().nullable(),
  /** Runs taken ahead of a free slot (0: none; a control plane before it sends none). */
  prefetch: z.number().default(0),
  runtimes: z.array(z.string()),
  labels: z.record(z.string(), z.string()),
  agent_version: z.string().nullable(),
  created_at: z.string(),
});
export type Workstation = z.infer<typeof workstationSchema>;

export const registerWorkstationResponseSchema = z.object({ workstation: workstationSchema });
export const listWorkstationsResponseSchema = z.object({ workstations: z.array(workstationSchema) });
export type ListWorkstationsResponse = z.infer<typeof listWorkstationsResponseSchema>;

export const credentialSchema = z.object({
  id: z.string(),
  kind: z.enum(['admin', 'workstation']),
  workstation_id: z.string().nullable(),
  display_name: z.string().nullable(),
  created_at: z.string(),
  last_used_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
});
export type Credential = z.infer<typeof credentialSchema>;
export const listCredentialsResponseSchema = z.object({ credentials: z.array(credentialSchema) });
export const revokeCredentialResponseSchema = z.object({ credential: credentialSchema });

/** Seconds without a heartbeat or link after which a workstation counts as offline. */
export const WORKSTATION_OFFLINE_AFTER_SECONDS = 90;
