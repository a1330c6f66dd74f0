import { Hono } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { PairingStore } from '@runt/pairing';
import { bearerAuth, type AuthEnv, type PrincipalResolver } from '@runt/transport-auth';
import {
  connectCommand,
  mintPairingCodeRequestSchema,
  redeemPairingCodeRequestSchema,
  type MintPairingCodeResponse,
  type PairingCodeStatusResponse,
  type RedeemPairingCodeResponse,
} from '@runt/protocol';
import { readJson } from '../body.js';
import { HttpError } from '../errors.js';
import type { WorkstationStore } from '../stores/workstation-store.js';

export interface PairingRouteDeps {
  pairing: PairingStore;
  workstations: WorkstationStore;
  resolve: PrincipalResolver;
  bodyLimitBytes: number;
  /** The URL workstations should dial (RUNT_PUBLIC_URL, or the listening address). */
  publicUrl: () => string;
}

/** Pairing codes: mint and watch (admin), redeem (anyone holding a code). */
export function pairingRoutes(deps: PairingRouteDeps) {
  const admin = bearerAuth({ resolve: deps.resolve, kinds: ['admin'] });
  return new Hono<AuthEnv>()
    .post('/redeem', async (c) => {
      const body = await readJson(c, redeemPairingCodeRequestSchema, deps.bodyLimitBytes);
      const clientAddress = clientAddressOf(c);
      const result = await deps.pairing.redeem(
        { code: body.code, clientAddress },
        async (tx, { pairingId }) => {
          const displayName = body.display_name ?? body.hostname?.split('.')[0] ?? 'workstation';
          const ws = await deps.workstations.createPaired(tx, {
            displayName,
            ...(body.hostname ? { hostname: body.hostname } : {}),
            pairingId,
          });
          return { workstationId: ws.workstationId, result: { ...ws, pairingId } };
        },
      );
      const answer: RedeemPairingCodeResponse = {
        ok: true,
        pairing: { id: result.pairingId },
        credential: { token: result.token, credential_id: result.credentialId },
        workstation: { id: result.workstationId, display_name: result.displayName },
      };
      c.header('Cache-Control', 'no-store');
      return c.json(answer, 201);
    })
    .post('/', admin, async (c) => {
      const body = await readJson(c, mintPairingCodeRequestSchema, deps.bodyLimitBytes);
      const minted = await deps.pairing.mint({
        createdBy: c.get('principal').id,
        ...(body.ttl_seconds ? { ttlMs: body.ttl_seconds * 1000 } : {}),
      });
      const answer: MintPairingCodeResponse = {
        pairing: { id: minted.id, code: minted.code, expires_at: minted.expiresAt.toISOString() },
        connect_command: connectCommand(deps.publicUrl(), minted.code),
      };
      c.header('Cache-Control', 'no-store');
      return c.json(answer, 201);
    })
    .get('/:id/status', admin, async (c) => {
      const pairing = await pairingCodeStatus(deps, c.req.param('id'));
      if (!pairing) throw new HttpError('not-found', 'no such pairing code');
      const answer: PairingCodeStatusResponse = { pairing };
      return c.json(answer);
    });
}

/** Where a pairing code is: pending → redeemed → registered (or expired); undefined for an unknown id. */
export async function pairingCodeStatus(
  deps: Pick<PairingRouteDeps, 'pairing' | 'workstations'>,
  id: string,
): Promise<PairingCodeStatusResponse['pairing'] | undefined> {
  const p = await deps.pairing.get(id);
  if (!p) return undefined;
  const ws = p.redeemedAt ? await deps.workstations.registeredByPairing(p.id) : undefined;
  const status = ws?.registered
    ? 'registered'
    : p.redeemedAt
      ? 'redeemed'
      : p.expired
        ? 'expired'
        : 'pending';
  return {
    id: p.id,
    status,
    expires_at: p.expiresAt.toISOString(),
    workstation_id: ws?.id ?? p.redeemedBy ?? null,
  };
}

/** The client's address as the socket saw it (what the failed-guess limits count by). */
export function clientAddressOf(c: Parameters<typeof getConnInfo>[0]): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown'; // app.request() in tests has no socket
  }
}
