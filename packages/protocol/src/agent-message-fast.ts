import { fastOrSchema, isObj, noSymbols, onlyKeys, type MessageParse } from './control-message-fast.js';
import { LEASE_MS_MAX, LEASE_MS_MIN } from './lease-limits.js';
import {
  LINK_OPS,
  MAX_LINK_BATCH_REQUESTS,
  MAX_LINK_REQUEST_ID_CHARS,
  MAX_LINK_TARGET_CHARS,
  type AgentRequestMessage,
  type AgentRequestsMessage,
  type LinkOp,
} from './link-requests.js';
import {
  agentMessageSchema,
  eventTypeSchema,
  EXIT_CODE_MAX,
  EXIT_CODE_MIN,
  failureKindSchema,
  MAX_EVENTS_PER_REQUEST,
  MAX_FAILURE_MESSAGE_CHARS,
  MAX_STARTED_MS_AGO,
  runEventInputSchema,
  runReportStatusSchema,
  type AgentMessage,
} from './runs.js';

/**
 * The control plane's parse of an agent's message off the link: `agentMessageSchema`, with a
 * fast path for the one message that comes with every run, a `request` or a `requests` frame of them (issue 9, control-plane
 * profile: the zod parses of the envelope and of a terminal report's body were ~5 % of the
 * control plane's CPU on the Postgres drain and ~5 KB allocated per run). The fast path takes a
 * message only when every field has exactly the plain shape an agent sends: the types and bounds
 * the schema asks for (the bounds read from the constants the schemas are built with), no unknown key, no key holding `undefined`. Anything else, valid or not,
 * goes through the schema, which stays the one definition: the fast path never takes what the
 * schema refuses, and what it takes equals the schema's output (`agent-message-fast.test.ts`
 * feeds both the same good and bad messages). Like {@link parseControlMessage} on the agent.
 *
 * @example
 * const parsed = parseAgentMessage(JSON.parse(text));
 * if (parsed.success) handle(parsed.data);
 */
export function parseAgentMessage(json: unknown): MessageParse<AgentMessage> {
  return fastOrSchema<AgentMessage>(agentRequestOf(json) ?? agentRequestsOf(json), agentMessageSchema, json);
}

type Obj = Record<string, unknown>;

const OPS: ReadonlySet<unknown> = new Set(Object.keys(LINK_OPS));
const REQUEST_KEYS = new Set(['type', 'id', 'op', 'target', 'body']);
/** A request inside a `requests` frame: a `request`'s keys but its `type`. */
const BATCHED_KEYS = new Set([...REQUEST_KEYS].filter((k) => k !== 'type'));
const REQUESTS_KEYS = new Set(['type', 'requests']);
const REPORT_STATUSES: ReadonlySet<unknown> = new Set(runReportStatusSchema.options);
const FAILURE_KINDS: ReadonlySet<unknown> = new Set(failureKindSchema.options);
const EVENT_TYPES: ReadonlySet<unknown> = new Set(eventTypeSchema.options);
const STATUS_KEYS = new Set([
  'fencing_token',
  'status',
  'exit_code',
  'failure_kind',
  'failure_message',
  'events',
  'answer',
  'started_ms_ago',
]);
const EVENTS_KEYS = new Set(['fencing_token', 'events']);
const HEARTBEAT_KEYS = new Set(['fencing_token', 'lease_ms']);
const EVENT_KEYS = new Set(['seq', 'type', 'payload', 'at']);

/**
 * The pattern `runEventInputSchema`'s `at` (`z.string().datetime()`) checks, read off the schema
 * itself so the two never differ; `undefined` (every event with an `at` goes to the schema) if
 * a zod upgrade moves it.
 */
const AT_PATTERN: RegExp | undefined = (() => {
  const at = runEventInputSchema.shape.at.unwrap() as unknown as {
    _zod?: { def?: { checks?: Array<{ _zod?: { def?: { format?: string; pattern?: unknown } } }> } };
  };
  const checks = at._zod?.def?.checks ?? [];
  if (checks.length !== 1) return undefined;
  const def = checks[0]?._zod?.def;
  return def?.format === 'datetime' && def.pattern instanceof RegExp ? def.pattern : undefined;
})();

const isStrLen = (x: unknown, min: number, max: number): x is string =>
  typeof x === 'string' && x.length >= min && x.length <= max;
/** `z.number().int()` (a safe integer) within `[min, max]`. */
const isInt = (x: unknown, min = -Infinity, max = Infinity): x is number =>
  Number.isSafeInteger(x) && (x as number) >= min && (x as number) <= max;

/** A `z.record(z.string(), z.unknown())` as JSON gives it (`__proto__`, which JSON.parse makes an own key and the record drops, goes to the schema). */
function isPlainRecord(x: unknown): boolean {
  if (!isObj(x)) return false;
  for (const k in x) if (k === '__proto__' || x[k] === undefined) return false;
  return noSymbols(x);
}

/** `events` of a report or an append, as `runEventInputSchema` takes each unchanged. */
function isPlainEvents(x: unknown, min: number, max: number): boolean {
  if (!Array.isArray(x) || x.length < min || x.length > max) return false;
  for (let i = 0; i < x.length; i++) {
    const e: unknown = x[i];
    if (!isObj(e) || !onlyKeys(e, EVENT_KEYS)) return false;
    if (!isInt(e.seq, 1) || !EVENT_TYPES.has(e.type) || !isPlainRecord(e.payload)) return false;
    if (e.at !== undefined && !(typeof e.at === 'string' && AT_PATTERN && testAt(e.at))) return false;
  }
  return true;
}

function testAt(at: string): boolean {
  AT_PATTERN!.lastIndex = 0;
  return AT_PATTERN!.test(at);
}

/** The body of a `status` report as `reportRunStatusRequestSchema` takes it unchanged. */
function isPlainStatus(b: Obj): boolean {
  if (!onlyKeys(b, STATUS_KEYS) || !isInt(b.fencing_token) || !REPORT_STATUSES.has(b.status)) return false;
  if (b.exit_code !== undefined && !isInt(b.exit_code, EXIT_CODE_MIN, EXIT_CODE_MAX)) return false;
  if (b.failure_kind !== undefined && !FAILURE_KINDS.has(b.failure_kind)) return false;
  if (b.failure_message !== undefined && !isStrLen(b.failure_message, 0, MAX_FAILURE_MESSAGE_CHARS))
    return false;
  if (b.answer !== undefined && b.answer !== 'brief' && b.answer !== 'run') return false;
  if (b.started_ms_ago !== undefined && !isInt(b.started_ms_ago, 0, MAX_STARTED_MS_AGO)) return false;
  return b.events === undefined || isPlainEvents(b.events, 0, MAX_EVENTS_PER_REQUEST);
}

/**
 * `body` itself when it has exactly the plain shape `LINK_OP_REQUEST_SCHEMAS[op]` takes unchanged
 * (the ops of every run: `status`, `events`, `heartbeat`); `undefined` otherwise: the caller
 * validates it with the op's schema (whose refusal is the 400 answer).
 *
 * @example
 * const body = linkRequestBodyOf(msg.op, msg.body) ?? validate(LINK_OP_REQUEST_SCHEMAS[msg.op], msg.body, 'body');
 */
export function linkRequestBodyOf(op: LinkOp, body: unknown): unknown {
  if (!isObj(body)) return undefined;
  switch (op) {
    case 'status':
      return isPlainStatus(body) ? body : undefined;
    case 'events':
      return onlyKeys(body, EVENTS_KEYS) &&
        isInt(body.fencing_token) &&
        isPlainEvents(body.events, 1, MAX_EVENTS_PER_REQUEST)
        ? body
        : undefined;
    case 'heartbeat':
      return onlyKeys(body, HEARTBEAT_KEYS) &&
        isInt(body.fencing_token) &&
        isInt(body.lease_ms, LEASE_MS_MIN, LEASE_MS_MAX)
        ? body
        : undefined;
    default:
      return undefined;
  }
}

/**
 * `json` as a `request` message when it has exactly the plain shape (taken as it is, no copy;
 * its `body` is the op's to check, see {@link linkRequestBodyOf}); `undefined` otherwise (the
 * caller asks the schema).
 */
export function agentRequestOf(json: unknown): AgentRequestMessage | undefined {
  if (!isObj(json) || json.type !== 'request' || !onlyKeys(json, REQUEST_KEYS)) return undefined;
  return isPlainRequest(json) ? (json as AgentRequestMessage) : undefined;
}

/** The fields of a request (in a `request` message or a `requests` frame) as its schema takes them. */
function isPlainRequest(r: Obj): boolean {
  if (!isStrLen(r.id, 1, MAX_LINK_REQUEST_ID_CHARS) || !OPS.has(r.op)) return false;
  return isStrLen(r.target, 1, MAX_LINK_TARGET_CHARS) && 'body' in r;
}

/**
 * `json` as a `requests` frame when it and every request in it have exactly the plain shape
 * (taken as it is, no copy; each `body` is its op's to check); `undefined` otherwise.
 */
export function agentRequestsOf(json: unknown): AgentRequestsMessage | undefined {
  if (!isObj(json) || json.type !== 'requests' || !onlyKeys(json, REQUESTS_KEYS)) return undefined;
  const rs = json.requests;
  if (!Array.isArray(rs) || rs.length < 1 || rs.length > MAX_LINK_BATCH_REQUESTS) return undefined;
  for (let i = 0; i < rs.length; i++) {
    const r: unknown = rs[i];
    if (!isObj(r) || !onlyKeys(r, BATCHED_KEYS) || !isPlainRequest(r)) return undefined;
  }
  return json as AgentRequestsMessage;
}
