import {
  controlMessageSchema,
  failureKindSchema,
  MAX_RUNS_PER_OFFER,
  runStatusSchema,
  type ControlMessage,
} from './runs.js';

/**
 * The agent's parse of a control message off the link: `controlMessageSchema`, with a fast path
 * for the one message that comes with every run, `offer-claimed` (issue 9, agent profile: its
 * zod parse was ~3.5 % of the agent's CPU and ~9 KB allocated per run). The fast path takes a
 * message only when every field has exactly the plain shape the control plane sends (`toRun`,
 * `claimAnswer`): the types the schema asks for, no unknown key, no field the schema would
 * transform (a run's `retry` policy fills defaults) or that is rarely sent (`attempts`,
 * `pending_reason`). Anything else, valid or not, goes through the schema, which stays the one
 * definition: the fast path never takes what the schema refuses, and what it takes equals the
 * schema's output (`control-message-fast.test.ts` feeds both the same good and bad messages).
 *
 * @example
 * const parsed = parseControlMessage(JSON.parse(text));
 * if (parsed.success) handle(parsed.data);
 */
export function parseControlMessage(json: unknown): MessageParse<ControlMessage> {
  return fastOrSchema(offerClaimedOf(json), controlMessageSchema, json);
}

/** A link message's parse, as zod's `safeParse` answers. */
export type MessageParse<T> = { success: true; data: T } | { success: false; error: unknown };

/** The message a fast path took (`fast`), otherwise `schema`'s answer for `json`: the one definition. */
export function fastOrSchema<T>(
  fast: T | undefined,
  schema: { safeParse(json: unknown): MessageParse<T> },
  json: unknown,
): MessageParse<T> {
  if (fast) return { success: true, data: fast };
  const parsed = schema.safeParse(json);
  return parsed.success ? { success: true, data: parsed.data } : { success: false, error: parsed.error };
}

type Obj = Record<string, unknown>;
type Claimed = Extract<ControlMessage, { type: 'offer-claimed' }>;

const RUN_STATUSES: ReadonlySet<unknown> = new Set(runStatusSchema.options);
const FAILURE_KINDS: ReadonlySet<unknown> = new Set(failureKindSchema.options);

export const isObj = (x: unknown): x is Obj =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && Object.getPrototypeOf(x) === Object.prototype;
const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const isStr = (x: unknown): x is string => typeof x === 'string';
const strOrNull = (x: unknown): boolean => x === null || typeof x === 'string';
const numOrNull = (x: unknown): boolean => x === null || isNum(x);

/** Symbol keys (never from JSON) go to the schema: a record refuses them, an object drops them. */
export const noSymbols = (o: Obj): boolean => Object.getOwnPropertySymbols(o).length === 0;

/** Only keys of `allowed`, none of them holding `undefined` (the schema's output may drop or keep those: the schema decides). */
export function onlyKeys(o: Obj, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (!allowed.has(k) || o[k] === undefined) return false;
  return noSymbols(o);
}

function isStrArray(x: unknown): boolean {
  if (!Array.isArray(x)) return false;
  for (let i = 0; i < x.length; i++) if (typeof x[i] !== 'string') return false;
  return true;
}

/** A `Record<string, string>` as JSON gives it (`__proto__`, which JSON.parse makes an own key, goes to the schema). */
function isStrRecord(x: unknown): boolean {
  if (!isObj(x)) return false;
  for (const k in x) if (k === '__proto__' || typeof x[k] !== 'string') return false;
  return noSymbols(x);
}

const CLAIM_KEYS = new Set([
  'fencing_token',
  'expires_at',
  'run',
  'next_event_seq',
  'pending_commands',
  'secret_env',
]);
const RUN_KEYS = new Set([
  'id',
  'status',
  'runtime',
  'image',
  'command',
  'env',
  'secret_env_names',
  'workdir',
  'ready_when',
  'placement',
  'resources',
  'bundle',
  'max_attempts',
  'attempt',
  'workstation_id',
  'lease',
  'exit_code',
  'failure_kind',
  'failure_message',
  'cancel_requested',
  'created_at',
  'offered_at',
  'accepted_at',
  'started_at',
  'finished_at',
  'timeout_s',
  'queue_timeout_s',
  'retry',
  'not_before',
]);
const READY_KEYS = new Set(['log_line']);
const PLACEMENT_KEYS = new Set(['workstation_id', 'labels']);
const RESOURCES_KEYS = new Set(['cpus', 'memory_bytes']);
const BUNDLE_KEYS = new Set(['sha256']);
const LEASE_KEYS = new Set(['holder', 'fencing_token', 'expires_at']);

/** A run as `runSchema` takes it unchanged (see {@link parseControlMessage}). */
function isPlainRun(r: unknown): boolean {
  if (!isObj(r) || !onlyKeys(r, RUN_KEYS)) return false;
  if (!isStr(r.id) || !RUN_STATUSES.has(r.status) || !isStr(r.runtime) || !strOrNull(r.image)) return false;
  if (!isStrArray(r.command) || !isStrRecord(r.env)) return false;
  if (r.secret_env_names !== undefined && !isStrArray(r.secret_env_names)) return false;
  if (!strOrNull(r.workdir)) return false;
  const ready = r.ready_when;
  if (ready !== null && !(isObj(ready) && onlyKeys(ready, READY_KEYS) && isStr(ready.log_line))) return false;
  const p = r.placement;
  if (!isObj(p) || !onlyKeys(p, PLACEMENT_KEYS)) return false;
  if (p.workstation_id !== undefined && !isStr(p.workstation_id)) return false;
  if (p.labels !== undefined && !isStrRecord(p.labels)) return false;
  const res = r.resources;
  if (!isObj(res) || !onlyKeys(res, RESOURCES_KEYS)) return false;
  if (
    (res.cpus !== undefined && !isNum(res.cpus)) ||
    (res.memory_bytes !== undefined && !isNum(res.memory_bytes))
  )
    return false;
  const b = r.bundle;
  if (b !== null && !(isObj(b) && onlyKeys(b, BUNDLE_KEYS) && isStr(b.sha256))) return false;
  if (!isNum(r.max_attempts) || !isNum(r.attempt) || !strOrNull(r.workstation_id)) return false;
  const l = r.lease;
  if (
    l !== null &&
    !(isObj(l) && onlyKeys(l, LEASE_KEYS) && isStr(l.holder) && isNum(l.fencing_token) && isStr(l.expires_at))
  )
    return false;
  if (!numOrNull(r.exit_code) || !(r.failure_kind === null || FAILURE_KINDS.has(r.failure_kind)))
    return false;
  if (!strOrNull(r.failure_message) || typeof r.cancel_requested !== 'boolean' || !isStr(r.created_at))
    return false;
  if (
    !strOrNull(r.offered_at) ||
    !strOrNull(r.accepted_at) ||
    !strOrNull(r.started_at) ||
    !strOrNull(r.finished_at)
  )
    return false;
  if (r.timeout_s !== undefined && !numOrNull(r.timeout_s)) return false;
  if (r.queue_timeout_s !== undefined && !numOrNull(r.queue_timeout_s)) return false;
  if (r.not_before !== undefined && !strOrNull(r.not_before)) return false;
  // a policy fills defaults (the schema's work); none is the common case
  return r.retry === undefined || r.retry === null;
}

/** A claim answer as `claimRunResponseSchema` takes it unchanged. */
function isPlainClaim(c: unknown): boolean {
  if (!isObj(c) || !onlyKeys(c, CLAIM_KEYS)) return false;
  if (!isNum(c.fencing_token) || !isStr(c.expires_at) || !isNum(c.next_event_seq)) return false;
  if (c.pending_commands !== undefined && typeof c.pending_commands !== 'boolean') return false;
  if (c.secret_env !== undefined && !isStrRecord(c.secret_env)) return false;
  return isPlainRun(c.run);
}

/**
 * `json` as an `offer-claimed` message when it has exactly the plain shape (taken as it is, no
 * copy); `undefined` otherwise (the caller asks the schema).
 */
export function offerClaimedOf(json: unknown): Claimed | undefined {
  if (!isObj(json) || json.type !== 'offer-claimed') return undefined;
  const runs = json.runs;
  if (!Array.isArray(runs) || runs.length < 1 || runs.length > MAX_RUNS_PER_OFFER) return undefined;
  for (const k in json) if (k !== 'type' && k !== 'runs') return undefined;
  if (!noSymbols(json)) return undefined;
  for (let i = 0; i < runs.length; i++) if (!isPlainClaim(runs[i])) return undefined;
  return json as Claimed;
}
