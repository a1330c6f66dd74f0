import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

describe('ops endpoints', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('pglite');
  });
  afterAll(async () => h?.close());

  const PANEL_PAGE = /^\/(|sign-in|sign-out|workstations(\/.*)?|runs(\/.*)?|assets\/.*)$/;

  it('/openapi.json documents exactly the routes the app serves', async () => {
    const r = await h.api('/openapi.json');
    expect(r.status).toBe(200);
    expect(r.json.openapi).toBe('3.1.0');
    const documented = new Set<string>();
    for (const [path, ops] of Object.entries(r.json.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${path}`);
    }
    const served = new Set(
      h.cp.app.routes
        .filter((route) => route.method !== 'ALL')
        // The panel's HTML pages (docs/panel.md) are not the JSON API; they never live under /api.
        .filter((route) => route.path.startsWith('/api/') || !PANEL_PAGE.test(route.path))
        .map((route) => `${route.method} ${route.path.replace(/:(\w+)/g, '{$1}').replace(/(.)\/$/, '$1')}`),
    );
    expect([...served].filter((s) => !documented.has(s))).toEqual([]);
    expect([...documented].filter((d) => !served.has(d))).toEqual([]);
    const submit = r.json.paths['/api/runs'].post;
    expect(submit.requestBody.content['application/json'].schema.properties.runtime).toBeDefined();
  });

  it('/metrics counts requests by route pattern and reports runs and links', async () => {
    await h.api('/api/runs/run_does_not_exist', { token: h.adminToken });
    await h.api('/api/runs', { token: h.adminToken, body: { runtime: 'fake', command: ['true'] } });
    const r = await fetch(`${h.cp.url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain');
    const text = await r.text();
    expect(text).toContain('runt_cp_http_requests_total{method="GET",route="/api/runs/:id",status="404"} 1');
    expect(text).toMatch(/runt_cp_runs\{status="queued"\} 1/);
    expect(text).toContain('runt_cp_agent_links 0');
    expect(text).not.toContain('run_does_not_exist');
    // Every statement is counted: the submit and the scrape's own count of runs at least.
    const statements = Number(/^runt_cp_sql_statements_total (\d+)$/m.exec(text)?.[1]);
    expect(statements).toBeGreaterThanOrEqual(2);
    await h.api('/api/runs', { token: h.adminToken, body: { runtime: 'fake', command: ['true'] } });
    const again = await (await fetch(`${h.cp.url}/metrics`)).text();
    expect(Number(/^runt_cp_sql_statements_total (\d+)$/m.exec(again)?.[1])).toBeGreaterThan(statements);
  });

  it('/metrics reports how late the event loop ran, not its 1 s sampling interval', async () => {
    // Two firings of the 1 s sampling timer make the first sample (src/event-loop-lateness.ts).
    await new Promise((r) => setTimeout(r, 2_300));
    const lag = (text: string) =>
      Object.fromEntries(
        ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'].map((stat) => {
          const m = new RegExp(`^runt_cp_nodejs_eventloop_lag_${stat}_seconds (\\S+)$`, 'm').exec(text);
          return [stat, Number(m?.[1])];
        }),
      );
    const first = lag(await (await fetch(`${h.cp.url}/metrics`)).text());
    // A second scrape right after the first (most likely no new sample: the last values, not
    // an empty histogram's min 9223372036 and mean NaN).
    const second = lag(await (await fetch(`${h.cp.url}/metrics`)).text());
    for (const values of [first, second])
      for (const [stat, v] of Object.entries(values)) {
        expect(Number.isFinite(v), stat).toBe(true);
        expect(v, stat).toBeGreaterThanOrEqual(0);
        // an idle test process's loop is late by milliseconds (0.9: room for a loaded machine's
        // stalls), where the time between firings is ≥ 1 s
        expect(v, stat).toBeLessThan(0.9);
      }
  });
});
