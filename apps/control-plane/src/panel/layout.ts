import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { PANEL_ASSETS } from './assets/panel-assets.js';

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

const NAV = [
  { href: '/workstations', label: 'Workstations' },
  { href: '/workstations/new', label: 'Add a workstation' },
  { href: '/runs', label: 'Runs' },
  { href: '/runs/new', label: 'Submit a run' },
] as const;

/**
 * The page frame: header with navigation and sign out (when signed in), `<main>` with the
 * page's content. `current` marks the navigation entry of this page.
 */
export function layout(opts: { title: string; current?: string; signedIn: boolean; body: Html }): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${opts.title} · runt</title>
<link rel="stylesheet" href="${PANEL_ASSETS.style.path}">
<script src="${PANEL_ASSETS.script.path}" defer></script>
</head>
<body>
<a class="skip" href="#content">Skip to content</a>
<header class="top">
<span class="brand">runt</span>
${
  opts.signedIn
    ? html`<nav aria-label="Main"><ul>${NAV.map(
        (n) =>
          html`<li><a href="${n.href}"${opts.current === n.href ? html` aria-current="page"` : ''}>${n.label}</a></li>`,
      )}</ul></nav>
<form method="post" action="/sign-out"><button type="submit">Sign out</button></form>`
    : ''
}
</header>
<main id="content" tabindex="-1">
${opts.body}
</main>
</body>
</html>`;
}

/** A status badge: the word is the information, the colour only repeats it. */
export function badge(status: string): Html {
  return html`<span class="badge b-${status}">${status}</span>`;
}

/** A time shown as "12 s ago" (kept current by the client script), with the exact time as tooltip. */
export function ago(iso: string | null): Html {
  if (!iso) return html`never`;
  return html`<time datetime="${iso}" data-relative title="${iso}">${relative(iso)}</time>`;
}

export function relative(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function bytes(n: number | null): string {
  if (n === null) return '–';
  const gib = n / 1024 ** 3;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`;
}
