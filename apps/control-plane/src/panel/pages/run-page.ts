import { html } from 'hono/html';
import { isSecretEnv, isTerminalRunStatus, type Run, type RunAttempt, type RunCommand } from '@runt/protocol';
import { ago, badge, type Html } from '../layout.js';
import { commandText, duration } from './runs-page.js';

export const MASK = '•••••• (hidden)';

/** The run's env as the panel shows it: secret entries, and values whose names look like credentials, hidden (`isSecretEnv`). */
export function maskedEnv(run: Pick<Run, 'env' | 'secret_env_names'>): Array<[string, string]> {
  return Object.entries(run.env).map(([k, v]) => [k, isSecretEnv(k, run.secret_env_names) ? MASK : v]);
}

/** Status, timeline, attempts and commands: the live part of the run page. */
export function runFragment(
  run: Run,
  opts: {
    workstationName?: string;
    commands: RunCommand[];
    attempts: RunAttempt[];
    workstationNames?: Map<string, string>;
  },
): Html {
  const steps: Array<[string, string | null]> = [
    ['queued', run.created_at],
    ['offered', run.offered_at],
    ['accepted', run.accepted_at],
    ['running', run.started_at],
    [isTerminalRunStatus(run.status) ? run.status : 'finished', run.finished_at],
  ];
  const reason = run.pending_reason;
  return html`<dl class="spec">
<dt>Status</dt><dd data-run-status="${run.status}">${badge(run.status)}${run.cancel_requested && !isTerminalRunStatus(run.status) ? html` <span class="hint">cancel requested</span>` : ''}</dd>
${run.status === 'queued' && reason ? html`<dt>Why queued</dt><dd data-pending-reason="${reason.code}">${reason.message}</dd>` : ''}
<dt>Workstation</dt><dd>${run.workstation_id ? html`<a href="/workstations#ws-${run.workstation_id}">${opts.workstationName ?? run.workstation_id}</a>` : '–'}</dd>
<dt>Attempt</dt><dd>${run.attempt} of ${run.max_attempts}</dd>
<dt>Exit code</dt><dd data-exit-code>${run.exit_code ?? '–'}</dd>
<dt>Failure</dt><dd>${run.failure_kind ? html`<span class="mono">${run.failure_kind}</span>${run.failure_message ? html`: ${run.failure_message}` : ''}` : '–'}</dd>
</dl>
<h2>Timeline</h2>
<table><thead><tr><th scope="col">Step</th><th scope="col">At</th><th scope="col">Took</th></tr></thead><tbody>
${steps.map(([name, at], i) => {
  const next = steps.slice(i + 1).find(([, t]) => t)?.[1] ?? null;
  return html`<tr><th scope="row">${name}</th><td>${at ? html`<time datetime="${at}" title="${at}">${at.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>` : '–'}</td><td>${at && (next || !isTerminalRunStatus(run.status)) && i < 4 ? duration(at, next) : '–'}</td></tr>`;
})}
</tbody></table>
${opts.attempts.length > 1 ? attemptsTable(run, opts.attempts, opts.workstationNames ?? new Map<string, string>()) : ''}
<h2 id="commands">Commands</h2>
${
  opts.commands.length === 0
    ? html`<p class="hint">No commands yet.</p>`
    : html`<table><thead><tr><th scope="col">#</th><th scope="col">Command</th><th scope="col">State</th><th scope="col">Exit code</th><th scope="col">Queued</th></tr></thead><tbody>
${opts.commands.map(
  (c) =>
    html`<tr data-command="${c.id}"><th scope="row">${c.seq}</th><td class="mono">${commandText(c.payload.command)}</td><td>${badge(c.state)}</td><td>${c.exit_code ?? '–'}</td><td>${ago(c.created_at)}</td></tr>`,
)}</tbody></table>`
}`;
}

/**
 * Every attempt of a retried or re-queued run (the API's `attempts`): its outcome, exit code,
 * failure kind, times, and a link to its own log (the events of its seq range, as
 * `runt run logs --attempt` reads them).
 */
function attemptsTable(run: Run, attempts: RunAttempt[], names: Map<string, string>): Html {
  const at = (t: string | null) =>
    t ? html`<time datetime="${t}" title="${t}">${t.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>` : '–';
  return html`<h2 id="attempts">Attempts</h2>
<table data-attempts><thead><tr><th scope="col">#</th><th scope="col">Status</th><th scope="col">Workstation</th><th scope="col">Exit code</th><th scope="col">Failure</th><th scope="col">Started</th><th scope="col">Finished</th><th scope="col">Took</th><th scope="col">Log</th></tr></thead><tbody>
${attempts.map(
  (a) =>
    html`<tr data-attempt="${a.attempt}"><th scope="row">${a.attempt}</th><td data-attempt-status="${a.status}">${badge(a.status)}</td><td>${a.workstation_id ? (names.get(a.workstation_id) ?? a.workstation_id) : '–'}</td><td data-attempt-exit>${a.exit_code ?? '–'}</td><td>${a.failure_kind ? html`<span class="mono">${a.failure_kind}</span>${a.failure_message ? html`: ${a.failure_message}` : ''}` : '–'}${a.retry_at ? html`<br><span class="hint">retried, not before ${at(a.retry_at)}</span>` : ''}</td><td>${at(a.started_at)}</td><td>${at(a.finished_at)}</td><td>${a.started_at && (a.finished_at || !isTerminalRunStatus(a.status)) ? duration(a.started_at, a.finished_at) : '–'}</td><td><a href="/runs/${run.id}/log?attempt=${a.attempt}" download id="attempt-log-${a.attempt}" aria-label="Download the log of attempt ${a.attempt}">Log</a></td></tr>`,
)}</tbody></table>`;
}

export function runPage(run: Run, fragment: Html, opts: { message?: string; commandValue?: string }): Html {
  const live = !isTerminalRunStatus(run.status);
  return html`<h1>Run <span class="mono">${run.id}</span></h1>
${opts.message ? html`<p class="error" role="alert">${opts.message}</p>` : ''}
<div class="actions">
${live ? html`<form method="post" action="/runs/${run.id}/cancel"><button type="submit" class="danger" id="cancel">Cancel run</button></form>` : ''}
<a class="button" href="/runs/${run.id}/log" download id="download">Download log</a>
<a class="button" href="/runs/new">Submit another</a>
</div>
<div data-live="/runs/${run.id}?fragment=1" aria-live="polite">${fragment}</div>
<h2>Log</h2>
<div data-log="/runs/${run.id}/events">
<p class="hint" data-log-state role="status">The live log needs JavaScript; <a href="/runs/${run.id}/log">download it</a> instead.</p>
<pre class="log" data-log-output tabindex="0" aria-label="Run log"></pre>
</div>
<h2>Queue a command</h2>
<form method="post" action="/runs/${run.id}/commands">
<label for="command">Command (run with <code>/bin/sh -c</code> inside the running workload)</label>
<input type="text" id="command" name="command" required value="${opts.commandValue ?? ''}">
<p><button type="submit" id="queue-command">Queue</button></p>
</form>
<h2>Spec</h2>
<dl class="spec">
<dt>Runtime</dt><dd>${run.runtime}</dd>
<dt>Image</dt><dd class="mono">${run.image ?? '–'}</dd>
<dt>Command</dt><dd class="mono">${commandText(run.command) || '(the image default)'}</dd>
<dt>Working directory</dt><dd class="mono">${run.workdir ?? '–'}</dd>
<dt>Environment</dt><dd>${Object.keys(run.env).length === 0 ? '–' : html`<ul>${maskedEnv(run).map(([k, v]) => html`<li class="mono">${k}=${v}</li>`)}</ul>`}</dd>
<dt>Placement</dt><dd>${run.placement.workstation_id ? html`workstation <span class="mono">${run.placement.workstation_id}</span>` : 'any workstation'}${
    run.placement.labels && Object.keys(run.placement.labels).length
      ? html`, labels ${Object.entries(run.placement.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`
      : ''
  }</dd>
<dt>Timeout</dt><dd data-timeout>${run.timeout_s ? seconds(run.timeout_s) + ' once started' : 'none'}</dd>
<dt>Queue timeout</dt><dd data-queue-timeout>${run.queue_timeout_s ? seconds(run.queue_timeout_s) + ' to be placed' : 'none'}</dd>
<dt>Resources</dt><dd>${run.resources.cpus ? `${run.resources.cpus} CPU` : ''}${run.resources.memory_bytes ? ` ${Math.round(run.resources.memory_bytes / 1024 ** 2)} MiB` : ''}${!run.resources.cpus && !run.resources.memory_bytes ? '–' : ''}</dd>
<dt>Submitted</dt><dd>${ago(run.created_at)}</dd>
</dl>`;
}

/** `90` → `1m 30s`, `3600` → `1h` (the timeouts of a run, in whole seconds). */
function seconds(total: number): string {
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return [h ? `${h}h` : '', m ? `${m}m` : '', s || (!h && !m) ? `${s}s` : ''].filter(Boolean).join(' ');
}
