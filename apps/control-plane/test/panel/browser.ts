/// <reference lib="dom" />
// page.evaluate bodies run in the browser.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { expect } from 'vitest';

/** The flags DEVELOPERS.md names for a quiet, headless, sandbox-less Chromium in CI. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

export const CHROMIUM_PATH = process.env.RUNT_CHROMIUM ?? '/usr/bin/chromium';

export interface TestBrowser {
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

/** Debian's Chromium through playwright-core, with a fresh user-data-dir (no cookies, no cache). */
export async function launchBrowser(): Promise<TestBrowser> {
  const dir = mkdtempSync(join(tmpdir(), 'runt-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  context.setDefaultTimeout(30_000);
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core inside the page (injected with page.evaluate: the panel's CSP governs the page's
 * own scripts, not the test's) and fails on serious or critical violations.
 */
export async function expectAccessible(page: Page, what: string): Promise<void> {
  const result = await page.evaluate(async (source) => {
    // axe-core's source, injected as the page's own script would be (CSP allows evaluate).
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- injecting axe-core's bundled source is the point
    if (!(window as unknown as { axe?: unknown }).axe) new Function(source)();
    const axe = (
      window as unknown as {
        axe: {
          run(
            ctx: Document,
            opts: unknown,
          ): Promise<{
            violations: Array<{
              id: string;
              impact: string | null;
              help: string;
              nodes: Array<{ target: unknown }>;
            }>;
          }>;
        };
      }
    ).axe;
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => JSON.stringify(n.target)).slice(0, 5),
    }));
  }, AXE_SOURCE);
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad, `${what}: ${JSON.stringify(bad, null, 2)}`).toEqual([]);
}

/** Where screenshots go: RUNT_PANEL_SCREENSHOTS (docs/panel when refreshing the docs), else a temp dir. */
export function screenshotDir(): string {
  const dir = process.env.RUNT_PANEL_SCREENSHOTS ?? join(tmpdir(), 'runt-panel-screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Presses Tab until the element matching `selector` has focus (keyboard-only use). */
export async function tabTo(page: Page, selector: string, maxTabs = 40): Promise<void> {
  for (let i = 0; i < maxTabs; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${selector}`);
}
