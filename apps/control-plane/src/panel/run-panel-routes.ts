import { Hono, type MiddlewareHandler } from 'hono';
import { stream } from 'hono/streaming';
import {
  logBytes,
  queueCommandRequestSchema,
  runStatusSchema,
  submitRunRequestSchema,
  type RunStatus,
} from '@runt/protocol';
import type { Database } from '@runt/sql';
import type { RunAppDeps } from '../app.js';
import { HttpError, toHttpError } from '../errors.js';
import { queueCommand } from '../routes/commands.js';
import { cancelRun, followEvents, lastEventId, submitRun } from '../routes/runs.js';
import { PendingReasons } from '../runs/pending-reason.js';
import { toAttempts } from '../runs/run-row.js';
import type { WorkstationStore } from '../stores/workstation-store.js';
import { runFragment, runPage } from './pages/run-page.js';
import { runsFragment, runsPage, type RunsQuery } from './pages/runs-page.js';
import { submitBody, submitPage, type SubmitForm } from './pages/submit-page.js';
import { page, readForm } from './panel-page.js';
import {
  fleetChoices,
  knownRuntimes,
  runCountsByStatus,
  submitChoices,
  workstationIdByName,
  workstationNames,
} from './panel-reads.js';
import { securityHeaders, type PanelEnv } from './panel-security.js';

export type RunPanelDeps = RunAppDeps;

export interface RunPanelRouteDeps {
  db: Database;
  runs: RunPanelDeps;
  workstations: WorkstationStore;
  bodyLimitBytes: number;
  session: MiddlewareHandler<PanelEnv>;
  origin: MiddlewareHandler;
}

const PAGE_SIZE = 50;

/**
 * The run pages: the list (filters, paging, counts, live), one run (spec, timeline, commands,
 * live log, cancel, queue a command, download the log) and the submit form. Writes go through
 * the same functions as the JSON API (`submitRun`, `cancelRun`, `queueCommand`).
 */
export function runPanelRoutes(deps: RunPanelRouteDeps) {
  const { session, origin } = deps;
  const r = deps.runs;
  const api = { ...r, workstations: deps.workstations };
  // Why a queued run is still waiting: derived at read, as for the API and the CLI.
  const pending = new PendingReasons(deps.db, deps.workstations);
  const app = new Hono<PanelEnv>();

  app.get('/runs', securityHeaders, session, async (c) => {
    const status = c.req.query('status');
    const q: RunsQuery = {
      ...(status && runStatusSchema.safeParse(status).success ? { status } : {}),
      ...(c.req.query('workstation') ? { workstation: c.req.query('workstation')! } : {}),
      ...(c.req.query('runtime') ? { runtime: c.req.query('runtime')!.slice(0, 100) } : {}),
      ...(c.req.query('cursor') ? { cursor: c.req.query('cursor')!.slice(0, 100) } : {}),
    };
    const wantsFragment = c.req.query('fragment') !== undefined;
    // The filters' choices (whole page only) are read alongside the list, not after it.
    const choices = wantsFragment ? undefined : Promise.all([knownRuntimes(deps.db), fleetChoices(deps.db)]);
    choices?.catch(() => {}); // awaited below, where a failure is thrown
    const wsId = q.workstation ? await workstationIdByName(deps.db, q.workstation) : undefined;
    let message: string | undefined;
    let listed: Awaited<ReturnType<typeof r.runs.listSummaries>> = {
      runs: [],
      next_cursor: null,
    };
    let counts = new Map<string, number>();
    if (q.workstation && !wsId) message = `No workstation is named ${q.workstation}.`;
    else {
      const filter = {
        ...(wsId ? { workstation_id: wsId } : {}),
        ...(q.runtime ? { runtime: q.runtime } : {}),
      };
      try {
        [listed, counts] = await Promise.all([
          r.runs.listSummaries({
            ...filter,
            ...(q.status ? { status: q.status as RunStatus } : {}),
            ...(q.cursor ? { cursor: q.cursor } : {}),
            limit: PAGE_SIZE,
          }),
          runCountsByStatus(deps.db, filter),
        ]);
      } catch (e) {
        if (toHttpError(e)?.status !== 400) throw e;
        message = 'That page link is not valid any more; showing the newest runs.';
        delete q.cursor;
        [listed, counts] = await Promise.all([
          r.runs.listSummaries({
            ...filter,
            ...(q.status ? { status: q.status as RunStatus } : {}),
            limit: PAGE_SIZE,
          }),
          runCountsByStatus(deps.db, filter),
        ]);
      }
    }
    const fragment = runsFragment({ q, runs: listed.runs, counts, nextCursor: listed.next_cursor });
    if (!choices) return c.html(fragment);
    const [used, fleet] = await choices;
    const runtimes = [...new Set([...used, ...fleet.runtimes])].sort();
    return page(
      c,
      'Runs',
      runsPage({ q, fragment, workstationNames: fleet.names, runtimes, ...(message ? { message } : {}) }),
      { current: '/runs' },
    );
  });

  const submitForm = async (values: SubmitForm, error?: string) => {
    const { workstations, runtimes } = await submitChoices(deps.db);
    // Secret values never go back into a page, not even the form that sent them.
    const { secret_env: secrets, ...shown } = values;
    return submitPage({
      values: shown,
      workstations,
      runtimes,
      ...(error ? { error } : {}),
      ...(error && secrets?.trim() ? { secretsRetyped: true } : {}),
    });
  };

  app.get('/runs/new', securityHeaders, session, async (c) =>
    page(c, 'Submit a run', await submitForm({}), { current: '/runs/new' }),
  );

  app.post('/runs/new', securityHeaders, origin, session, async (c) => {
    const form = (await readForm(c, deps.bodyLimitBytes)) as SubmitForm;
    const built = submitBody(form);
    const parsed = built.error ? undefined : submitRunRequestSchema.safeParse(built.body);
    const invalid =
      built.error ??
      (parsed && !parsed.success
        ? parsed.error.issues.map((i) => `${i.path.join('.') || 'run'}: ${i.message}`).join('; ')
        : undefined);
    if (invalid || !parsed?.success)
      return page(c, 'Submit a run', await submitForm(form, invalid ?? 'invalid run'), {
        current: '/runs/new',
        status: 400,
      });
    try {
      const { run } = await submitRun(api, parsed.data);
      return c.redirect(`/runs/${run.id}`, 303);
    } catch (e) {
      const status = toHttpError(e)?.status;
      if (status !== undefined && status >= 400 && status < 500) {
        return page(c, 'Submit a run', await submitForm(form, (e as Error).message), {
          current: '/runs/new',
          status: 400,
        });
      }
      throw e;
    }
  });

  const fragmentOf = async (id: string) => {
    const found = await r.runs.get(id);
    if (!found) throw new HttpError('not-found', 'no such run');
    const run = found.status === 'queued' ? (await pending.annotate([found]))[0]! : found;
    // Attempts only when there were several (the first attempt is the run row itself); names
    // only of the workstations shown, not their rows.
    const attempts = run.attempt > 1 ? await r.runs.attempts(run) : toAttempts(run, []);
    const ids = attempts.flatMap((a) => (a.workstation_id ? [a.workstation_id] : []));
    if (run.workstation_id) ids.push(run.workstation_id);
    const [names, commands] = await Promise.all([
      workstationNames(deps.db, ids),
      r.commands.list(id, 0, 500),
    ]);
    const workstationName = run.workstation_id ? names.get(run.workstation_id) : undefined;
    return {
      run,
      fragment: runFragment(run, {
        commands,
        attempts,
        workstationNames: names,
        ...(workstationName ? { workstationName } : {}),
      }),
    };
  };

  app.get('/runs/:id', securityHeaders, session, async (c) => {
    const { run, fragment } = await fragmentOf(c.req.param('id'));
    if (c.req.query('fragment') !== undefined) return c.html(fragment);
    const error = c.req.query('error');
    return page(c, `Run ${run.id}`, runPage(run, fragment, error ? { message: error.slice(0, 300) } : {}), {
      current: '/runs',
    });
  });

  app.post('/runs/:id/cancel', securityHeaders, origin, session, async (c) => {
    const id = c.req.param('id');
    try {
      await cancelRun(r, id);
    } catch (e) {
      if (toHttpError(e)?.status !== 409) throw e;
      return c.redirect(`/runs/${id}?error=${encodeURIComponent('The run had already ended.')}`, 303);
    }
    return c.redirect(`/runs/${id}`, 303);
  });

  app.post('/runs/:id/commands', securityHeaders, origin, session, async (c) => {
    const id = c.req.param('id');
    const form = await readForm(c, deps.bodyLimitBytes);
    const line = (form.command ?? '').trim();
    const parsed = queueCommandRequestSchema.safeParse({ type: 'exec', command: ['/bin/sh', '-c', line] });
    if (!line || !parsed.success)
      return c.redirect(`/runs/${id}?error=${encodeURIComponent('Give the command to run.')}`, 303);
    try {
      await queueCommand(r, id, parsed.data);
    } catch (e) {
      if (toHttpError(e)?.status !== 409) throw e;
      return c.redirect(
        `/runs/${id}?error=${encodeURIComponent(`The command was not queued: ${(e as Error).message}`)}#commands`,
        303,
      );
    }
    return c.redirect(`/runs/${id}#commands`, 303);
  });

  // The live log: the API's event stream (same function, same resume rules), behind the session.
  app.get('/runs/:id/events', securityHeaders, session, async (c) => {
    const after = Number(c.req.query('after_seq') ?? '0');
    return followEvents(
      c,
      r,
      c.req.param('id'),
      Math.max(Number.isSafeInteger(after) && after > 0 ? after : 0, lastEventId(c)),
    );
  });

  // The whole log, or with ?attempt=N one attempt's (its seq range from the run's attempts, as
  // `runt run logs --attempt` reads it).
  app.get('/runs/:id/log', securityHeaders, session, async (c) => {
    const id = c.req.param('id');
    const wanted = c.req.query('attempt');
    let after = 0;
    let last = Infinity;
    if (wanted !== undefined) {
      const run = await r.runs.get(id);
      if (!run) throw new HttpError('not-found', 'no such run');
      const n = Number(wanted);
      const attempt = Number.isSafeInteger(n)
        ? (await r.runs.attempts(run)).find((a) => a.attempt === n)
        : undefined;
      if (!attempt) throw new HttpError('not-found', `run ${id} has no attempt ${wanted.slice(0, 20)}`);
      after = attempt.first_event_seq - 1;
      last = attempt.last_event_seq ?? Infinity;
    }
    const first = await r.events.list(id, after, 1000);
    if (!first) throw new HttpError('not-found', 'no such run');
    c.header('Content-Type', 'text/plain; charset=utf-8');
    const name = `${id}${wanted !== undefined ? `-attempt-${Number(wanted)}` : ''}`.replace(/[^\w.-]/g, '_');
    c.header('Content-Disposition', `attachment; filename="${name}.log"`);
    return stream(c, async (s) => {
      let page = first;
      for (;;) {
        const chunk = Buffer.concat(
          page.events.filter((e) => e.type === 'log' && e.seq <= last).map((e) => logBytes(e.payload)),
        );
        if (chunk.length > 0) await s.write(chunk);
        const end = page.events[page.events.length - 1];
        if (!end || page.events.length < 1000 || end.seq >= last) break;
        const next = await r.events.list(id, end.seq, 1000);
        if (!next) break;
        page = next;
      }
    });
  });

  return app;
}
