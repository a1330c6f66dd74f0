import { jsonAnswer, linkRequestOf, type TransportVia } from '@runt/protocol';
import type { LinkClient } from './link-client.js';

/**
 * The agent's run calls over its link: a `TransportVia` for `ControlPlaneClient` and
 * `LeaseClient`. A fenced run call (claim, renew, events, status, release, command ack/status;
 * see `linkRequestOf`) goes over the link while it is open and comes back as the HTTP answer it
 * stands for (same status, body and error), so everything above the transport — retries,
 * refusals, response validation — is the same code for both. Anything else, a link that is down,
 * or one that drops before the reply, goes over HTTP; every such call is idempotent or fenced,
 * so sending it again is safe.
 *
 * @example
 * const client = new ControlPlaneClient({ url, token, nodeHttp: true, via: linkVia(() => link) });
 */
export function linkVia(link: () => LinkClient | undefined): TransportVia {
  return async (req, timeoutMs) => {
    const l = link();
    if (!l?.up) return undefined;
    const call = linkRequestOf(req);
    if (!call) return undefined;
    const reply = await l.request(call.op, call.target, call.body, timeoutMs, req.signal);
    if (!reply) return undefined;
    return jsonAnswer(
      reply.status,
      reply.status < 300 ? reply.result : { error: reply.error },
      reply.retry_after_s === undefined ? undefined : { 'retry-after': String(reply.retry_after_s) },
    );
  };
}
