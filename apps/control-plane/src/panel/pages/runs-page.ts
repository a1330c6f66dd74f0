import { html } from 'hono/html';
import { runStatusSchema } from '@runt/protocol';
import type { RunSummary } from '../../runs/run-store.js';
import { ago, badge, type Html } from '../layout.js';
import { COUNT_CAP } from '../panel-reads.js';

export interface RunsQuery {
  status?: string;
  workstation?: string;
  runtime?: string;
  cursor?: string;
}

export function runsQueryString(q: RunsQuery, extra: Record<string, string> = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...q, ...extra })) if (v) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Seconds or minutes between two times, or since the first. */
export function duration(from: string | null, to: string | null, now = Date.now()): string {
  if (!from) return '–';
  const ms = (to ? Date.parse(to) : now) - Date.parse(from);
  if (ms < 1000) return `${Math.max(0, ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 120 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function commandText(command: string[]): string {
  if (command.length === 3 && command[0] === '/bin/sh' && command[1] === '-c') return command[2]!;
  return command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Counts per status and the table: the live part of the runs page. */
export function runsFragment(opts: {
  q: RunsQuery;
  runs: RunSummary[];
  counts: Map<string, number>;
  nextCursor: string | null;
}): Html {
  const total = [...opts.counts.values()].reduce((a, b) => a + Math.min(b, COUNT_CAP), 0);
  const capped = [...opts.counts.values()].some((n) => n > COUNT_CAP);
  const { q } = opts;
  return html`<ul class="counts" aria-label="Runs per status">
<li><a href="/runs${runsQueryString({ ...q, status: '', cursor: '' })}"${!q.status ? html` aria-current="true"` : ''}>all <span class="mono">${total}${capped ? '+' : ''}</span></a></li>
${runStatusSchema.options.map(
  (s) =>
    html`<li><a href="/runs${runsQueryString({ ...q, status: s, cursor: '' })}"${q.status === s ? html` aria-current="true"` : ''}>${badge(s)} <span class="mono" data-count="${s}">${countText(opts.counts.get(s) ?? 0)}</span></a></li>`,
)}
</ul>
${
  opts.runs.length === 0
    ? html`<p class="notice">No runs match. <a href="/runs/new">Submit a run</a>.</p>`
    : html`<table>
<caption class="hint">Newest first</caption>
<thead><tr><th scope="col">Run</th><th scope="col">Status</th><th scope="col">Runtime</th><th scope="col">Command</th><th scope="col">Workstation</th><th scope="col">Submitted</th><th scope="col">Duration</th></tr></thead>
<tbody>${opts.runs.map(
        (r) => html`<tr id="run-${r.id}">
<th scope="row"><a class="mono" href="/runs/${r.id}">${r.id}</a></th>
<td data-col="status">${badge(r.status)}</td>
<td>${r.runtime}${r.image ? html`<br><span class="hint mono">${r.image}</span>` : ''}</td>
<td class="mono">${truncate(commandText(r.command), 80) || '–'}</td>
<td>${r.workstation_id ? (r.workstation_name ?? r.workstation_id) : '–'}</td>
<td>${ago(r.created_at)}</td>
<td>${duration(r.started_at, r.finished_at)}</td>
</tr>`,
      )}</tbody>
</table>`
}
<nav class="pager" aria-label="Pages">
${q.cursor ? html`<a href="/runs${runsQueryString({ ...q, cursor: '' })}">Newest</a>` : ''}
${opts.nextCursor ? html`<a href="/runs${runsQueryString({ ...q, cursor: opts.nextCursor })}" rel="next">Older</a>` : ''}
</nav>`;
}

/** A count bounded by {@link COUNT_CAP}: `1000+` once it reached the cap. */
export function countText(n: number): string {
  return n > COUNT_CAP ? `${COUNT_CAP}+` : String(n);
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function runsPage(opts: {
  q: RunsQuery;
  fragment: Html;
  /** The fleet's display names (the workstation filter's choices), sorted, distinct. */
  workstationNames: string[];
  runtimes: string[];
  message?: string;
}): Html {
  const { q } = opts;
  const names = opts.workstationNames;
  return html`<h1>Runs</h1>
${opts.message ? html`<p class="error" role="alert">${opts.message}</p>` : ''}
<form class="filters" method="get" action="/runs" aria-label="Filter runs">
<div><label for="f-status">Status</label><select id="f-status" name="status"><option value="">any</option>${runStatusSchema.options.map(
    (s) => html`<option${q.status === s ? html` selected` : ''}>${s}</option>`,
  )}</select></div>
<div><label for="f-ws">Workstation</label><select id="f-ws" name="workstation"><option value="">any</option>${names.map(
    (n) => html`<option${q.workstation === n ? html` selected` : ''}>${n}</option>`,
  )}</select></div>
<div><label for="f-runtime">Runtime</label><select id="f-runtime" name="runtime"><option value="">any</option>${opts.runtimes.map(
    (r) => html`<option${q.runtime === r ? html` selected` : ''}>${r}</option>`,
  )}</select></div>
<div><button type="submit">Filter</button></div>
</form>
<div data-live="/runs${runsQueryString(q, { fragment: '1' })}" aria-live="polite">${opts.fragment}</div>`;
}
