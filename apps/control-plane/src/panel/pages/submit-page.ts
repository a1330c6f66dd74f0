import { html } from 'hono/html';
import type { Workstation } from '@runt/protocol';
import type { Html } from '../layout.js';

export interface SubmitForm {
  runtime?: string;
  image?: string;
  command?: string;
  env?: string;
  /** Secret env entries, `NAME=value` a line: sent once, never written back into a page. */
  secret_env?: string;
  labels?: string;
  workstation?: string;
}

export function submitPage(opts: {
  values: SubmitForm;
  workstations: Array<Pick<Workstation, 'id' | 'display_name' | 'status'>>;
  runtimes: string[];
  error?: string;
  /** The form came back with an error and had secret entries: they are not written back, say so. */
  secretsRetyped?: boolean;
}): Html {
  const v = opts.values;
  const runtimes = [...new Set(['process', 'docker', 'podman', ...opts.runtimes])];
  return html`<h1>Submit a run</h1>
${opts.error ? html`<p class="error" role="alert" id="submit-error">${opts.error}</p>` : ''}
<form method="post" action="/runs/new" class="card">
<label for="runtime">Runtime</label>
<select id="runtime" name="runtime">${runtimes.map((r) => html`<option${(v.runtime ?? 'process') === r ? html` selected` : ''}>${r}</option>`)}</select>
<label for="image">Image</label>
<input type="text" id="image" name="image" value="${v.image ?? ''}" aria-describedby="image-hint">
<p class="hint" id="image-hint">For docker and podman, e.g. <code>busybox:latest</code>. Not used by the process runtime.</p>
<label for="cmd">Command</label>
<input type="text" id="cmd" name="command" value="${v.command ?? ''}" aria-describedby="cmd-hint">
<p class="hint" id="cmd-hint">A shell line, run with <code>/bin/sh -c</code>. Empty: the image's default command.</p>
<label for="env">Environment</label>
<textarea id="env" name="env" aria-describedby="env-hint">${v.env ?? ''}</textarea>
<p class="hint" id="env-hint">One <code>NAME=value</code> per line.</p>
<label for="secret-env">Secret environment</label>
<textarea id="secret-env" name="secret_env" autocomplete="off" spellcheck="false" aria-describedby="secret-env-hint"></textarea>
<p class="hint" id="secret-env-hint">One <code>NAME=value</code> per line, for tokens and passwords: stored encrypted, shown hidden, masked in the run's output${
    opts.secretsRetyped
      ? html` — <strong id="secret-env-again">not kept after an error: enter them again</strong>`
      : ''
  }.</p>
<label for="labels">Place on workstations with labels</label>
<input type="text" id="labels" name="labels" value="${v.labels ?? ''}" aria-describedby="labels-hint">
<p class="hint" id="labels-hint">Comma-separated <code>key=value</code>, e.g. <code>pool=gpu</code>.</p>
<label for="workstation">Or pin to a workstation</label>
<select id="workstation" name="workstation"><option value="">any matching workstation</option>${opts.workstations.map(
    (w) =>
      html`<option value="${w.id}"${v.workstation === w.id ? html` selected` : ''}>${w.display_name} (${w.status})</option>`,
  )}</select>
<p><button type="submit" class="primary" id="submit">Submit</button></p>
</form>`;
}

/** The form as a submit request body (validated by the caller with the API's schema). */
export function submitBody(form: SubmitForm): { body: Record<string, unknown>; error?: string } {
  const env: Record<string, string | { value: string; secret: true }> = {};
  for (const line of (form.env ?? '').split(/\r?\n/)) {
    if (line.trim() === '') continue;
    const i = line.indexOf('=');
    if (i <= 0) return { body: {}, error: `Environment: "${line.trim().slice(0, 40)}" is not NAME=value` };
    env[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  for (const line of (form.secret_env ?? '').split(/\r?\n/)) {
    if (line.trim() === '') continue;
    const i = line.indexOf('=');
    // the name only: the line holds a secret
    if (i <= 0) return { body: {}, error: 'Secret environment: a line is not NAME=value' };
    const name = line.slice(0, i).trim();
    if (name in env)
      return { body: {}, error: `${name.slice(0, 40)} is in both Environment and Secret environment` };
    env[name] = { value: line.slice(i + 1).replace(/\r$/, ''), secret: true };
  }
  const labels: Record<string, string> = {};
  for (const part of (form.labels ?? '').split(',')) {
    if (part.trim() === '') continue;
    const i = part.indexOf('=');
    if (i <= 0) return { body: {}, error: `Labels: "${part.trim().slice(0, 40)}" is not key=value` };
    labels[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  const command = (form.command ?? '').trim();
  return {
    body: {
      runtime: (form.runtime ?? '').trim(),
      ...(form.image?.trim() ? { image: form.image.trim() } : {}),
      command: command ? ['/bin/sh', '-c', command] : [],
      env,
      placement: {
        ...(form.workstation ? { workstation_id: form.workstation } : {}),
        ...(Object.keys(labels).length ? { labels } : {}),
      },
    },
  };
}
