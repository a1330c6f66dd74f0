import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

const REDOCLY = fileURLToPath(new URL('../node_modules/.bin/redocly', import.meta.url));
const PROMTOOL = '/usr/bin/promtool';

/**
 * `/openapi.json` and `/metrics` checked by the real tools their consumers run (issue 12):
 * `redocly lint` with its recommended rules, `promtool check metrics`.
 */
describe('published formats pass their own linters', () => {
  let h: Harness;
  let dir: string;
  beforeAll(async () => {
    h = await startHarness('pglite');
    dir = mkdtempSync(join(tmpdir(), 'runt-spec-lint-'));
  });
  afterAll(async () => h?.close());

  it('/openapi.json: redocly lint (recommended) reports no error and no warning', async () => {
    const file = join(dir, 'openapi.json');
    writeFileSync(file, JSON.stringify((await h.api('/openapi.json')).json));
    const r = await execa(REDOCLY, ['lint', '--extends=recommended', '--format=stylish', file], {
      reject: false,
      env: { REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
    });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out, out).toMatch(/Woohoo! Your API description is valid/);
    // (redocly also prints a Node-version notice in a box; only its findings, `line:col severity rule`, count.)
    expect(out, out).not.toMatch(/^\s*\d+:\d+\s+(error|warning)\s/m);
    expect(r.exitCode, out).toBe(0);
  }, 60_000);

  it('/openapi.json: POST /api/runs documents 200 for an idempotent repeat besides 201', async () => {
    const doc = (await h.api('/openapi.json')).json;
    expect(Object.keys(doc.paths['/api/runs'].post.responses)).toEqual(
      expect.arrayContaining(['200', '201']),
    );
  });

  it('/metrics: promtool check metrics finds no problem', async () => {
    await h.api('/api/runs', { token: h.adminToken, body: { runtime: 'fake', command: ['true'] } });
    const text = await (await fetch(`${h.cp.url}/metrics`)).text();
    const r = await execa(PROMTOOL, ['check', 'metrics'], { input: text, reject: false });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out.trim(), out).toBe('');
    expect(r.exitCode, out).toBe(0);
  }, 60_000);
});
