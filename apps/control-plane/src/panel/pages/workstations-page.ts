import { html } from 'hono/html';
import type { Workstation } from '@runt/protocol';
import { ago, badge, bytes, type Html } from '../layout.js';
import type { FleetRow } from '../panel-reads.js';

/** The fleet table (also the live fragment the page re-fetches every 2 s). */
export function workstationsTable(list: FleetRow[]): Html {
  if (list.length === 0) {
    return html`<p class="notice">No workstations yet. <a href="/workstations/new">Add a workstation</a> to pair the first one.</p>`;
  }
  return html`<table>
<caption class="hint">${list.length} workstation${list.length === 1 ? '' : 's'}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Runtimes</th><th scope="col">Labels</th><th scope="col">Runs / capacity</th><th scope="col">CPU</th><th scope="col">Memory</th><th scope="col">Agent</th><th scope="col">Last seen</th><th scope="col">Actions</th></tr></thead>
<tbody>
${list.map((w) => row(w))}
</tbody>
</table>`;
}

function row(w: FleetRow): Html {
  const labels = Object.entries(w.labels).map(([k, v]) => `${k}=${v}`);
  return html`<tr id="ws-${w.id}" data-workstation="${w.id}">
<th scope="row"><span class="ws-name">${w.display_name}</span><br><span class="hint mono">${w.id}</span></th>
<td data-col="status">${badge(w.status)}</td>
<td>${w.runtimes.length ? w.runtimes.join(', ') : '–'}</td>
<td>${labels.length ? labels.join(', ') : '–'}</td>
<td><a href="/runs?workstation=${encodeURIComponent(w.display_name)}">${w.in_use} / ${w.max_runs ?? '–'}</a>${
    w.prefetch > 0
      ? html` <span class="hint" title="runs its agent takes ahead of a free slot">+ ${w.prefetch} ahead</span>`
      : ''
  }</td>
<td>${w.cpu_count ?? '–'}</td>
<td>${bytes(w.memory_bytes)}</td>
<td>${w.agent_version ?? '–'}</td>
<td>${ago(w.last_seen_at)}</td>
<td><div class="actions">${actions(w)}</div></td>
</tr>`;
}

function actions(w: Pick<Workstation, 'id' | 'status' | 'display_name'>): Html {
  if (w.status === 'revoked') return html`–`;
  return html`${
    w.status === 'draining'
      ? html`<form class="inline" method="post" action="/workstations/${w.id}/undrain"><button type="submit" id="undrain-${w.id}" aria-label="Undrain ${w.display_name}">Undrain</button></form>`
      : html`<form class="inline" method="post" action="/workstations/${w.id}/drain"><button type="submit" id="drain-${w.id}" aria-label="Drain ${w.display_name}">Drain</button></form>`
  }
<a class="button" id="revoke-${w.id}" href="/workstations/${w.id}/revoke" aria-label="Revoke ${w.display_name}">Revoke…</a>`;
}

export function workstationsPage(table: Html, message?: string): Html {
  return html`<h1>Workstations</h1>
${message ? html`<p class="notice" role="status">${message}</p>` : ''}
<p><a class="button primary" href="/workstations/new">Add a workstation</a></p>
<div data-live="/workstations?fragment=1" aria-live="polite">${table}</div>`;
}

export function revokeConfirmPage(w: Workstation): Html {
  return html`<h1>Revoke ${w.display_name}?</h1>
<div class="card">
<p>Revoking ends this workstation's credential at once: its agent is disconnected, it takes no more runs,
and it has to be paired again with a new code to come back. Runs it holds are treated as lost.</p>
<div class="actions">
<form method="post" action="/workstations/${w.id}/revoke"><button type="submit" class="danger" id="confirm-revoke">Revoke ${w.display_name}</button></form>
<a class="button" href="/workstations">Keep it</a>
</div>
</div>`;
}
