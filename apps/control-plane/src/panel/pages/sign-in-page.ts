import { html } from 'hono/html';
import type { Html } from '../layout.js';

export function signInPage(opts: { next: string; error?: string }): Html {
  return html`<div class="sign-in card">
<h1>Sign in to runt</h1>
${opts.error ? html`<p class="error" role="alert" id="sign-in-error">${opts.error}</p>` : ''}
<form method="post" action="/sign-in">
<input type="hidden" name="next" value="${opts.next}">
<label for="token">Admin token</label>
<input type="password" id="token" name="token" autocomplete="off" required autofocus${opts.error ? html` aria-describedby="sign-in-error"` : ''}>
<p class="hint">The control plane wrote it to <code>.runt/admin-token</code> on first start, or it is your <code>RUNT_ADMIN_TOKEN</code>. It is sent once; the panel keeps a session cookie.</p>
<p><button type="submit" class="primary">Sign in</button></p>
</form>
</div>`;
}
