import type { Database, Queryable } from '@runt/sql';
import { runStatusSchema, type Run, type RunAttempt, type RunStatus } from '@runt/protocol';
import { RunError } from './run-error.js';
import type { SealedEnv } from './secret-box.js';
import { iso, SELECT_RUN, toAttempts, toRun, type AttemptRow, type RunRow } from './run-row.js';
import { readRunState, type RunState } from './run-state.js';

export interface ListRunsFilter {
  status?: RunStatus;
  workstation_id?: string;
  runtime?: string;
  limit: number;
  cursor?: string;
}

const encodeCursor = (position: number | string) => Buffer.from(`p:${position}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const m = /^p:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new RunError('invalid-request', 'cursor: not a cursor from next_cursor');
  return Number(m[1]);
}

/** The run fields a list of runs shows (read by one statement: see `listSummaries`). */
type SummaryField =
  | 'id'
  | 'status'
  | 'runtime'
  | 'image'
  | 'command'
  | 'workstation_id'
  | 'created_at'
  | 'started_at'
  | 'finished_at';

/** What a list of runs shows of each: a {@link Run}'s identity, outcome and times, and its workstation's name. */
export type RunSummary = Pick<Run, SummaryField> & { workstation_name: string | null };

type RunSummaryRow = Pick<RunRow, SummaryField | 'position'> & { workstation_name: string | null };

/**
 * The ids of a list's page (filters and cursor, newest first, `limit` + 1 to see a next page)
 * as a subquery, and its params. Each status is read through the index that holds it —
 * queued runs `runs_queued_idx`, runs holding a slot `runs_workstation_status_idx`, ended runs
 * `runs_status_position_idx`, `runs_workstation_ended_idx` or `runs_runtime_status_idx` (the
 * partial indexes of migration cp_0105, issue 9) — each branch stopping after `limit` + 1, and
 * the branches' rows merged by position: no index holds every run in position order.
 * The statuses are literals (so each branch's partial index is usable by a prepared plan),
 * taken from the protocol's list, never from the caller's text.
 */
export function listIdsSql(filter: ListRunsFilter): { ids: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (filter.workstation_id) add('r.workstation_id = ?', filter.workstation_id);
  if (filter.runtime) add('r.runtime = ?', filter.runtime);
  if (filter.cursor) add('r.position < ?', decodeCursor(filter.cursor));
  params.push(filter.limit + 1);
  const limit = `$${params.length}`;
  const branches = listedStatuses(filter).map(
    (s) =>
      `(select r.id, r.position from runs r where r.status = '${s}'${where.map((w) => ` and ${w}`).join('')} order by r.position desc limit ${limit})`,
  );
  return {
    ids: `select p.id from (${branches.join(' union all ')}) p order by p.position desc limit ${limit}`,
    params,
  };
}

/**
 * The statuses a list or a count under `filter` reads: the one asked for, else all. A
 * workstation filter leaves out `queued` unless asked: a queued run has no workstation (every
 * move to `queued` clears it), and reading the queue to find none would cost its length.
 */
export function listedStatuses(filter: { status?: RunStatus; workstation_id?: string }): RunStatus[] {
  if (filter.status) {
    if (!runStatusSchema.options.includes(filter.status)) {
      throw new RunError('invalid-request', `status: not one of ${runStatusSchema.options.join(', ')}`);
    }
    return [filter.status];
  }
  return runStatusSchema.options.filter((s) => !(filter.workstation_id && s === 'queued'));
}

/** The first `limit` rows, and the cursor past them when there were more. */
function pageOf<R extends { position: number | string }, T>(
  rows: R[],
  limit: number,
  map: (r: R) => T,
): { runs: T[]; next_cursor: string | null } {
  const page = rows.slice(0, limit);
  return {
    runs: page.map(map),
    next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.position) : null,
  };
}

/**
 * Reads of runs: one, a page, the fenced paths' state, and what an agent is re-sent when it
 * registers again. It writes nothing; every state change is in `transitions.ts`.
 */
export class RunStore {
  constructor(private readonly db: Database) {}

  /** One run with its lease, or undefined. */
  async get(id: string, q: Queryable = this.db): Promise<Run | undefined> {
    const r = await q.query<RunRow>(`${SELECT_RUN} where r.id = $1`, [id]);
    return r.rows[0] ? toRun(r.rows[0]) : undefined;
  }

  /** The sealed secret env entries of a run (null without any): only a claim answer opens them. */
  async sealedEnv(id: string, q: Queryable = this.db): Promise<SealedEnv | null> {
    const r = await q.query<{ secret_env: SealedEnv | null }>('select secret_env from runs where id = $1', [
      id,
    ]);
    return r.rows[0]?.secret_env ?? null;
  }

  /**
   * Every attempt of `run`, first to last (see `toAttempts`).
   *
   * @example
   * const attempts = await runs.attempts(run);
   */
  async attempts(run: Run): Promise<RunAttempt[]> {
    const r = await this.db.query<AttemptRow>(
      'select * from run_attempts where run_id = $1 order by attempt',
      [run.id],
    );
    return toAttempts(run, r.rows);
  }

  /** The fenced paths' view of a run; `lock` takes the row lock inside `q`'s transaction. */
  state(id: string, q: Queryable = this.db, lock = false): Promise<RunState | undefined> {
    return readRunState(q, id, lock);
  }

  /**
   * Newest first, filtered, paged by an opaque cursor (`next_cursor` is null on the last page).
   *
   * @example
   * const page = await runs.list({ status: 'queued', limit: 50 });
   */
  async list(filter: ListRunsFilter): Promise<{ runs: Run[]; next_cursor: string | null }> {
    const { ids, params } = listIdsSql(filter);
    const r = await this.db.query<RunRow>(
      `${SELECT_RUN} where r.id = any (array(${ids})) order by r.position desc`,
      params,
    );
    return pageOf(r.rows, filter.limit, toRun);
  }

  /**
   * {@link list} with only the columns a list of runs shows ({@link RunSummary}) and the name
   * of each run's workstation, in one statement: no lease join, and the stored env, placement
   * and retry JSON are not read (the panel's runs page).
   *
   * @example
   * const page = await runs.listSummaries({ status: 'queued', limit: 50 });
   */
  async listSummaries(filter: ListRunsFilter): Promise<{ runs: RunSummary[]; next_cursor: string | null }> {
    const { ids, params } = listIdsSql(filter);
    const r = await this.db.query<RunSummaryRow>(
      `select r.id, r.position, r.status, r.runtime, r.image, r.command, r.workstation_id, r.created_at, r.started_at,
              r.finished_at, (select w.display_name from workstations w where w.id = r.workstation_id) as workstation_name
         from runs r where r.id = any (array(${ids})) order by r.position desc`,
      params,
    );
    return pageOf(r.rows, filter.limit, (x) => ({
      id: x.id,
      status: x.status,
      runtime: x.runtime,
      image: x.image,
      command: x.command,
      workstation_id: x.workstation_id,
      workstation_name: x.workstation_name,
      created_at: iso(x.created_at)!,
      started_at: iso(x.started_at),
      finished_at: iso(x.finished_at),
    }));
  }

  /** Runs offered to a workstation (re-sent when its agent registers again). */
  async offeredTo(workstationId: string): Promise<Run[]> {
    const r = await this.db.query<RunRow>(
      `${SELECT_RUN} where r.workstation_id = $1 and r.status = 'offered' order by r.position`,
      [workstationId],
    );
    return r.rows.map(toRun);
  }

  /** Active runs of a workstation with a pending cancel (re-sent when its agent registers again). */
  async cancelRequestedOn(workstationId: string): Promise<string[]> {
    const r = await this.db.query<{ id: string }>(
      `select id from runs where workstation_id = $1 and status in ('accepted', 'running') and cancel_requested`,
      [workstationId],
    );
    return r.rows.map((x) => x.id);
  }

  /**
   * What {@link offeredTo} and {@link cancelRequestedOn} answer, for many workstations in one
   * statement (the links that registered in one turn of the event loop), by workstation id.
   */
  async resentOn(
    workstationIds: readonly string[],
  ): Promise<Map<string, { offered: Run[]; cancels: string[] }>> {
    const out = new Map(workstationIds.map((id) => [id, { offered: [] as Run[], cancels: [] as string[] }]));
    if (workstationIds.length === 0) return out;
    const rows = await this.db.query<RunRow>(
      `${SELECT_RUN} where r.workstation_id = any($1::text[])
          and (r.status = 'offered' or (r.status in ('accepted', 'running') and r.cancel_requested))
        order by r.position`,
      [[...out.keys()]],
    );
    for (const row of rows.rows) {
      const to = out.get(row.workstation_id!);
      if (row.status === 'offered') to?.offered.push(toRun(row));
      else to?.cancels.push(row.id);
    }
    return out;
  }
}
