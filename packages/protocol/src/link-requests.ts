import { z } from 'zod';
import type { TransportRequest } from './transport.js';

/**
 * The fenced run operations an agent may send over its link instead of HTTP, each with the HTTP
 * endpoint it stands for (`POST api/<resource>/<target>/<action>`). The answer of an op is
 * exactly that endpoint's answer: the same body on success, the same status and
 * `{error:{code,message,details?}}` on failure. The request body schemas are the endpoints' own
 * (`LINK_OP_REQUEST_SCHEMAS` in `runs.ts`).
 */
export const LINK_OPS = {
  claim: { resource: 'runs', action: 'claim' },
  heartbeat: { resource: 'runs', action: 'heartbeat' },
  events: { resource: 'runs', action: 'events' },
  status: { resource: 'runs', action: 'status' },
  release: { resource: 'runs', action: 'release' },
  'command-ack': { resource: 'commands', action: 'ack' },
  'command-status': { resource: 'commands', action: 'status' },
  'hand-back': { resource: 'runs', action: 'hand-back' },
} as const;
export type LinkOp = keyof typeof LINK_OPS;
export const linkOpSchema = z.enum(Object.keys(LINK_OPS) as [LinkOp, ...LinkOp[]]);

/**
 * The ops every control plane with link requests serves. A control plane closes a link that
 * sends an op it does not know, so an agent sends any other op over the link only when the
 * link's `registered` message lists it in `ops` (older control planes send no list: those ops
 * go over HTTP).
 */
export const BASE_LINK_OPS: ReadonlySet<LinkOp> = new Set<LinkOp>([
  'claim',
  'heartbeat',
  'events',
  'status',
  'release',
  'command-ack',
  'command-status',
]);

/**
 * Not an op but a form of one, listed in `registered.ops` by a control plane that takes it: a
 * terminal `status` report carrying `started_ms_ago` (the run's start recorded with its end).
 * An older control plane would drop the field and leave the run's `started_at` empty, so an
 * agent sends it only where this is listed.
 */
export const STATUS_STARTED_FORM = 'status+started';

/**
 * Not an op but a frame of them, listed in `registered.ops` by a control plane that takes it: a
 * `requests` message carries several requests (each exactly a `request` without its `type`) and
 * is answered by ONE `replies` message, each request's reply in the same order — exactly the
 * reply it would get on its own (issue 9: the terminal reports of the runs of one offer batch,
 * one message per run until then). It is framing, not an op, so it has no HTTP endpoint: each
 * request in it still stands for its own endpoint (`LINK_OPS`), and one whose frame is lost with
 * the link goes to that endpoint over HTTP as a lone request would. The request budget of a link
 * is charged per request in it, not per message. An agent sends one only where this is listed.
 * The control plane serves a frame's requests concurrently, in no set order (only the replies
 * keep the frame's order), so a frame holds only requests that do not depend on each other: at
 * most one per run, never an events flush beside that run's status report.
 */
export const LINK_REQUESTS_FORM = 'requests';

/**
 * Bounds of a `requests` frame: requests in it (the schema and the fast check), and its size in
 * bytes (a control plane closes a link sending a larger one as invalid; an agent sends a request
 * that would not fit on its own, as a plain `request`). A reply waits for the slowest request of
 * its frame, so frames stay small: 100 reports of ~1 KiB, a fraction of the link's 1 MiB message.
 */
export const MAX_LINK_BATCH_REQUESTS = 100;
export const MAX_LINK_BATCH_BYTES = 256 * 1024;

/** A link request's `id` and `target` lengths: one home for the schema below and the fast check (`agent-message-fast.ts`). */
export const MAX_LINK_REQUEST_ID_CHARS = 64;
export const MAX_LINK_TARGET_CHARS = 200;

/**
 * A request from the agent over its link: `id` (unique among its requests in flight) comes back
 * on the `reply`; `target` is the run id (run ops) or the command id (`command-*`), as in the
 * HTTP path; `body` is the HTTP body, validated by the control plane with the op's schema
 * (a bad body is a 400 reply, not a closed link).
 */
export const agentRequestMessageSchema = z.object({
  type: z.literal('request'),
  id: z.string().min(1).max(MAX_LINK_REQUEST_ID_CHARS),
  op: linkOpSchema,
  target: z.string().min(1).max(MAX_LINK_TARGET_CHARS),
  body: z.unknown(),
});
export type AgentRequestMessage = z.infer<typeof agentRequestMessageSchema>;

/**
 * The frame of a lone message's schema (see {@link LINK_REQUESTS_FORM}): `{type, [key]: […]}`,
 * 1 to {@link MAX_LINK_BATCH_REQUESTS} of that message each without its `type` — the one
 * definition of a `requests` frame and of its `replies`, so an item is checked exactly as its
 * lone message is.
 */
function frameOf<const T extends string, const K extends string, S extends z.ZodRawShape>(
  type: T,
  key: K,
  lone: z.ZodObject<S & { type: z.ZodLiteral<string> }>,
) {
  const items = z
    .array(lone.omit({ type: true }))
    .min(1)
    .max(MAX_LINK_BATCH_REQUESTS);
  return z.object({ type: z.literal(type), [key]: items } as { type: z.ZodLiteral<T> } & {
    [P in K]: typeof items;
  });
}

/** Several requests in one frame (see {@link LINK_REQUESTS_FORM}): each a `request` without its `type`. */
export const agentRequestsMessageSchema = frameOf('requests', 'requests', agentRequestMessageSchema);
export type AgentRequestsMessage = z.infer<typeof agentRequestsMessageSchema>;

/**
 * The answer to one `request`: `status` is the HTTP status the same call over HTTP answers
 * with; on 2xx `result` is that endpoint's body, otherwise `error` is its `{code,message,details?}`
 * (codes from `error-codes.ts`; `retry_after_s` where HTTP would send `Retry-After`).
 */
export const controlReplyMessageSchema = z.object({
  type: z.literal('reply'),
  id: z.string(),
  status: z.number().int().min(100).max(599),
  result: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }).optional(),
  retry_after_s: z.number().int().min(0).optional(),
});
export type ControlReplyMessage = z.infer<typeof controlReplyMessageSchema>;

/** The answer to a `requests` frame: one reply (without its `type`) per request, in their order. */
export const controlRepliesMessageSchema = frameOf('replies', 'replies', controlReplyMessageSchema);
export type ControlRepliesMessage = z.infer<typeof controlRepliesMessageSchema>;

const OP_BY_PATH = new Map<string, LinkOp>(
  Object.entries(LINK_OPS).map(([op, d]) => [`${d.resource}/${d.action}`, op as LinkOp]),
);
const LINK_PATH = /^api\/(runs|commands)\/([^/]+)\/([a-z-]+)$/;

/**
 * The link op an HTTP request stands for (`POST api/runs/run_1/status` → `status` on `run_1`),
 * or `undefined` for anything else (it stays on HTTP).
 *
 * @example
 * linkRequestOf({ method: 'POST', path: 'api/runs/run_1/heartbeat', json: { fencing_token: 3, lease_ms: 30_000 } });
 * // → { op: 'heartbeat', target: 'run_1', body: { fencing_token: 3, lease_ms: 30000 } }
 */
export function linkRequestOf(
  req: Pick<TransportRequest, 'method' | 'path' | 'json' | 'query' | 'bytes'>,
): { op: LinkOp; target: string; body: unknown } | undefined {
  if (req.method !== 'POST' || req.json === undefined || req.bytes || req.query) return undefined;
  const m = LINK_PATH.exec(req.path);
  if (!m) return undefined;
  const op = OP_BY_PATH.get(`${m[1]}/${m[3]}`);
  if (!op) return undefined;
  let target: string;
  try {
    target = decodeURIComponent(m[2]!);
  } catch {
    return undefined;
  }
  return { op, target, body: req.json };
}
