import { Hono, type Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { bearerAuth, type AuthEnv, type Principal, type PrincipalResolver } from '@runt/transport-auth';
import {
  isTerminalRunStatus,
  listEventsQuerySchema,
  listRunsQuerySchema,
  MAX_RUNS_PER_BATCH,
  submitRunRequestSchema,
  type Run,
} from '@runt/protocol';
import { readJson, readQuery } from '../body.js';
import { z } from 'zod';
import { HttpError } from '../errors.js';
import { requestSpan } from '../trace.js';
import type { EventWaiters } from '../event-waiters.js';
import type { RunLifecycle } from '../runs/run-lifecycle.js';
import type { BundleStore } from '../stores/bundle-store.js';
import type { EventPageJson, EventStore } from '../runs/event-store.js';
import type { RunStore } from '../runs/run-store.js';
import type { WorkstationStore } from '../stores/workstation-store.js';
import type { PendingReasons } from '../runs/pending-reason.js';

export interface RunRouteDeps {
  runs: RunStore;
  lifecycle: RunLifecycle;
  events: EventStore;
  bundles: BundleStore;
  workstations: WorkstationStore;
  waiters: EventWaiters;
  /** Adds `pending_reason` to the runs an operator reads. */
  pending: PendingReasons;
  resolve: PrincipalResolver;
  bodyLimitBytes: number;
  /** A live stream re-reads the database this often when nothing in-process woke it. */
  eventPollMs: number;
  shutdown?: AbortSignal;
}

/** Keep-alive comment on an idle event stream, so proxies do not cut it. */
const KEEPALIVE_MS = 15_000;

/** A workstation may read its own runs; everything else here is the operator's. */
function mayRead(p: Principal, run: Run): boolean {
  return p.kind === 'admin' || (p.workstationId !== undefined && p.workstationId === run.workstation_id);
}

/**
 * Runs, operator side: submit, list, read, cancel, and the event log (one page as JSON, or
 * followed live as `text/event-stream`).
 */
export function runRoutes(deps: RunRouteDeps) {
  const admin = bearerAuth({ resolve: deps.resolve, kinds: ['admin'] });
  const anyone = bearerAuth({ resolve: deps.resolve, kinds: ['admin', 'workstation'] });
  return new Hono<AuthEnv>()
    .post('/', admin, async (c) => {
      const span = requestSpan(c.req.raw);
      span?.mark('http.authed');
      const body = await readJson(c, submitRunRequestSchema, deps.bodyLimitBytes);
      span?.mark('http.parsed');
      const { run, created } = await submitRun(deps, body);
      span?.mark('http.answer');
      span?.end(run.id);
      return c.json({ run }, created ? 201 : 200);
    })
    .post('/batch', admin, async (c) => {
      // The envelope first; then each run on its own, so a bad one is named by its index.
      const { runs } = await readJson(c, batchEnvelope, deps.bodyLimitBytes);
      const out = await submitRuns(deps, runs.map(parseBatchItem));
      return c.json({ runs: out }, out.some((o) => o.created) ? 201 : 200);
    })
    .get('/', anyone, async (c) => {
      const q = readQuery(c, listRunsQuerySchema);
      const p = c.get('principal');
      if (p.kind !== 'admin') {
        if (q.workstation_id && q.workstation_id !== p.workstationId)
          throw new HttpError('forbidden', 'a workstation lists only its own runs');
        q.workstation_id = p.workstationId;
      }
      const page = await deps.runs.list(q);
      return c.json({ ...page, runs: await deps.pending.annotate(page.runs) });
    })
    .get('/:id', anyone, async (c) => {
      const run = await deps.runs.get(c.req.param('id'));
      if (!run) throw new HttpError('not-found', 'no such run');
      if (!mayRead(c.get('principal'), run))
        throw new HttpError('forbidden', 'the run belongs to another workstation');
      const [annotated] = await deps.pending.annotate([run]);
      return c.json({ run: { ...annotated!, attempts: await deps.runs.attempts(run) } });
    })
    .post('/:id/cancel', admin, async (c) => c.json({ run: await cancelRun(deps, c.req.param('id')) }))
    .get('/:id/events', admin, async (c) => {
      const runId = c.req.param('id');
      const q = readQuery(c, listEventsQuerySchema);
      if (wantsStream(c)) return followEvents(c, deps, runId, Math.max(q.after_seq, lastEventId(c)));
      // The events as the database wrote their JSON: stored payloads are not parsed and re-stringified.
      const page = await deps.events.listJson(runId, q.after_seq, q.limit);
      if (!page) throw new HttpError('not-found', 'no such run');
      const last = page.events[page.events.length - 1];
      return c.body(
        `{"events":[${page.events.map((e) => e.json).join(',')}],"next_after_seq":${last ? last.seq : q.after_seq},"run_status":${JSON.stringify(page.status)}}`,
        200,
        { 'content-type': 'application/json' },
      );
    });
}

/** Submits a run (the API's and the panel's one path): checks the bundle and pinned workstation, then schedules. */
export async function submitRun(
  deps: Pick<RunRouteDeps, 'lifecycle' | 'bundles' | 'workstations'>,
  body: z.output<typeof submitRunRequestSchema>,
): Promise<{ run: Run; created: boolean }> {
  if (body.bundle && !(await deps.bundles.info(body.bundle.sha256))) {
    throw new HttpError(
      'bundle-missing',
      `bundle ${body.bundle.sha256} has not been uploaded (PUT /api/bundles/:sha256 first)`,
    );
  }
  const pinned = body.placement.workstation_id;
  if (pinned && !(await deps.workstations.get(pinned)))
    throw new HttpError('invalid-request', `placement.workstation_id: no workstation ${pinned}`);
  return deps.lifecycle.submit(body);
}

const batchEnvelope = z.object({ runs: z.array(z.unknown()).min(1).max(MAX_RUNS_PER_BATCH) });

/** One run of a batch, validated as `POST /api/runs` would; a 400 names its index (`runs[3].runtime: …`, `details.index`). */
function parseBatchItem(value: unknown, index: number): z.output<typeof submitRunRequestSchema> {
  const parsed = submitRunRequestSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => ({ index, path: i.path.join('.'), message: i.message }));
  const first = issues[0]!;
  throw new HttpError(
    'invalid-request',
    `runs[${index}]${first.path ? `.${first.path}` : ''}: ${first.message}`,
    issues,
  );
}

/**
 * Submits runs in one insert (`POST /api/runs/batch`): checks every bundle and pinned
 * workstation first (each distinct one once; a 400 names the first run that names a missing
 * one), then submits them all; one scheduling pass for the batch.
 */
export async function submitRuns(
  deps: Pick<RunRouteDeps, 'lifecycle' | 'bundles' | 'workstations'>,
  bodies: Array<z.output<typeof submitRunRequestSchema>>,
): Promise<Array<{ run: Run; created: boolean }>> {
  const bundles = new Map<string, boolean>();
  const pinned = new Map<string, boolean>();
  for (const [index, body] of bodies.entries()) {
    const sha = body.bundle?.sha256;
    if (sha !== undefined) {
      if (!bundles.has(sha)) bundles.set(sha, Boolean(await deps.bundles.info(sha)));
      if (!bundles.get(sha))
        throw new HttpError(
          'bundle-missing',
          `runs[${index}].bundle: ${sha} has not been uploaded (PUT /api/bundles/:sha256 first)`,
          { index },
        );
    }
    const ws = body.placement.workstation_id;
    if (ws !== undefined) {
      if (!pinned.has(ws)) pinned.set(ws, Boolean(await deps.workstations.get(ws)));
      if (!pinned.get(ws))
        throw new HttpError(
          'invalid-request',
          `runs[${index}].placement.workstation_id: no workstation ${ws}`,
          {
            index,
          },
        );
    }
  }
  return deps.lifecycle.submitMany(bodies);
}

/** Cancels a run (the API's and the panel's one path) and tells its workstation. */
export async function cancelRun(deps: Pick<RunRouteDeps, 'lifecycle'>, id: string): Promise<Run> {
  const run = await deps.lifecycle.cancel(id);
  if (!run) throw new HttpError('not-found', 'no such run');
  return run;
}

function wantsStream(c: Context): boolean {
  return (c.req.header('accept') ?? '').includes('text/event-stream');
}

/** The `Last-Event-ID` a reconnecting EventSource sends (0 when absent). */
export function lastEventId(c: Context): number {
  const v = Number(c.req.header('last-event-id'));
  return Number.isSafeInteger(v) && v > 0 ? v : 0;
}

/**
 * Sends the events after `afterSeq`, then new ones as they are appended (`id:` is the seq),
 * and ends with an `end` event once the run is terminal and its terminal event was sent.
 */
export async function followEvents(
  c: Context,
  deps: Pick<RunRouteDeps, 'events' | 'waiters' | 'eventPollMs' | 'shutdown'>,
  runId: string,
  afterSeq: number,
) {
  const stop = new AbortController();
  c.req.raw.signal.addEventListener('abort', () => stop.abort(), { once: true });
  const onShutdown = () => stop.abort();
  if (deps.shutdown?.aborted) stop.abort();
  deps.shutdown?.addEventListener('abort', onShutdown, { once: true });
  stop.signal.addEventListener('abort', () => deps.shutdown?.removeEventListener('abort', onShutdown), {
    once: true,
  });
  // Each wait is registered before the read it follows, so an append in between still wakes it.
  let woke = deps.waiters.wait(runId, deps.eventPollMs, stop.signal);
  const first = await deps.events.listJson(runId, afterSeq, 1000);
  if (!first) {
    stop.abort();
    throw new HttpError('not-found', 'no such run');
  }
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => stop.abort());
    let after = afterSeq;
    let page: EventPageJson | undefined = first;
    let idleSince = Date.now();
    while (page && !stop.signal.aborted) {
      for (const e of page.events) {
        await stream.writeSSE({ id: String(e.seq), data: e.json });
        after = e.seq;
      }
      const drained = page.events.length < 1000;
      if (drained && isTerminalRunStatus(page.status)) {
        await stream.writeSSE({
          event: 'end',
          data: JSON.stringify({ run_status: page.status, last_seq: after }),
        });
        break;
      }
      if (page.events.length > 0) idleSince = Date.now();
      if (drained) {
        if (Date.now() - idleSince >= KEEPALIVE_MS) {
          await stream.write(': keepalive\n\n');
          idleSince = Date.now();
        }
        await woke;
      }
      if (stop.signal.aborted) break;
      woke = deps.waiters.wait(runId, deps.eventPollMs, stop.signal);
      page = await deps.events.listJson(runId, after, 1000);
    }
    stop.abort();
  });
}
