import type { ClaimRunResponse } from '@runt/protocol';
import type { Queryable } from '@runt/sql';
import { SecretUnavailableError, type SecretBox } from './secret-box.js';
import { finish, type ClaimGrant } from './transitions.js';

/**
 * The one builder of a claim answer (HTTP claim, link claim, `offer-claimed`, the re-sent
 * claimed offers): the only place a run's secret env values are opened, and the only message
 * that carries them (`secret_env`), to the agent holding the lease. Throws
 * {@link SecretUnavailableError} when they cannot be opened (the caller fails the run with
 * {@link failUnopenable}).
 *
 * @example
 * const answer = claimAnswer(grant, box);
 */
export function claimAnswer(g: ClaimGrant, box: SecretBox | undefined): ClaimRunResponse {
  const answer: ClaimRunResponse = {
    fencing_token: g.fencingToken,
    expires_at: g.expiresAt,
    run: g.run,
    next_event_seq: g.nextEventSeq,
    pending_commands: g.pendingCommands,
  };
  if (!g.sealed || Object.keys(g.sealed).length === 0) return answer;
  if (!box)
    throw new SecretUnavailableError(
      'this control plane has no secret key (RUNT_SECRET_KEY or RUNT_SECRET_KEY_FILE) to open the run’s secret env',
    );
  return { ...answer, secret_env: box.open(g.run.id, g.sealed) };
}

/**
 * Fails a claimed run whose secrets cannot be opened (`failed`, `internal`, the reason in its
 * failure message), fenced by the grant's token, and gives the lease up: never a claim that
 * errors again and again. True when it applied.
 *
 * @example
 * if (await failUnopenable(db, grant, e)) signals.eventsAppended(grant.run.id);
 */
export async function failUnopenable(
  q: Queryable,
  g: ClaimGrant,
  e: SecretUnavailableError,
): Promise<boolean> {
  const out = await finish(q, g.run.id, g.run.workstation_id!, g.fencingToken, {
    status: 'failed',
    failureKind: 'internal',
    message: `cannot open the run's secrets: ${e.message}`,
  });
  return out !== undefined;
}
