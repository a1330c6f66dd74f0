import { html } from 'hono/html';
import type { Html } from '../layout.js';

export function addWorkstationPage(): Html {
  return html`<h1>Add a workstation</h1>
<div class="card">
<p>A workstation is a machine that runs work for runt. Pairing it takes one line on that machine:
mint a single-use code here (valid 10 minutes), then run the line it shows there (it needs Node.js 20).</p>
<form method="post" action="/workstations/new"><button type="submit" class="primary" id="mint">Mint a pairing code</button></form>
</div>`;
}

/** The minted code's page: shown once (only the code's hash is kept), so it is the POST's answer. */
export function pairingCodePage(p: { id: string; command: string; expiresAt: string }): Html {
  return html`<h1>Add a workstation</h1>
<div class="card" data-pairing data-status-url="/workstations/pairing/${p.id}" data-expires-at="${p.expiresAt}">
<p>Run this on the workstation:</p>
<div class="connect"><code id="connect-line">${p.command}</code>
<button type="button" data-copy="connect-line" id="copy">Copy</button> <span id="connect-line-copied" role="status"></span></div>
<p class="hint">The code works once. It is not shown again: mint a new one if you lose it.</p>
<p><span data-countdown>Code valid until ${p.expiresAt}</span></p>
<p>Status: <span class="badge" data-pairing-status data-state="pending" role="status" aria-live="polite">waiting for the workstation</span></p>
<p data-pairing-done hidden></p>
<noscript><p><a href="/workstations">See the workstations</a> once the line has run.</p></noscript>
</div>`;
}
