import type { Database } from './sql.js';

export interface Migration {
  /** Unique and ordered: `0001_pairing`, `0002_runs`, … */
  id: string;
  sql: string;
}

/**
 * Applies the migrations not yet applied, in id order, each in its own transaction, recording
 * them in `runt_migrations`. Safe to call at every start, from several processes at once on one
 * Postgres (an advisory lock serialises them), and from several stores: each store
 * passes its own list and ids are global, so pick prefixed ids (`pairing_0001`).
 *
 * @example
 * await migrate(db, [{ id: 'demo_0001', sql: 'create table demo (id text primary key)' }]);
 */
export async function migrate(db: Database, migrations: Migration[]): Promise<string[]> {
  await db.transaction(async (tx) => {
    // `create table if not exists` is not safe against a concurrent one (two replicas starting
    // on an empty Postgres): both may create, one fails on pg_type's unique index.
    if (db.backend === 'postgres')
      await tx.query("select pg_advisory_xact_lock(hashtext('runt_migrations'))");
    await tx.query(
      'create table if not exists runt_migrations (id text primary key, applied_at timestamptz not null default now())',
    );
  });
  const applied: string[] = [];
  for (const m of [...migrations].sort((a, b) => a.id.localeCompare(b.id))) {
    const done = await db.transaction(async (tx) => {
      // Serialise concurrent starters on Postgres; harmless on PGlite.
      if (db.backend === 'postgres')
        await tx.query("select pg_advisory_xact_lock(hashtext('runt_migrations'))");
      const seen = await tx.query('select 1 from runt_migrations where id = $1', [m.id]);
      if (seen.rows.length > 0) return false;
      for (const stmt of splitStatements(m.sql)) await tx.query(stmt);
      await tx.query('insert into runt_migrations (id) values ($1)', [m.id]);
      return true;
    });
    if (done) applied.push(m.id);
  }
  return applied;
}

/** Splits on `;` at line ends; migrations keep one statement per `;`-terminated block. */
function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*(?:\r?\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
