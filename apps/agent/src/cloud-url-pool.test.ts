import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { isAgentError } from './agent-error.js';
import { CloudUrlPool, parseCloudUrls } from './cloud-url-pool.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A real listening server that answers its name; `closed` gives the URL of a port nobody listens on. */
async function server(name: string): Promise<string> {
  const s = createServer((req, res) => res.end(`${name} ${req.method} ${req.url}`));
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
}
async function closed(): Promise<string> {
  const url = await server('gone');
  const s = servers.pop()!;
  await new Promise((r) => s.close(r));
  return url;
}

describe('parseCloudUrls', () => {
  it('takes one URL or several comma-separated, trims, drops trailing slashes and duplicates', () => {
    expect(parseCloudUrls('http://a:8787')).toEqual(['http://a:8787']);
    expect(parseCloudUrls(' http://a:8787/ , https://b.example.com/runt/,http://a:8787 ')).toEqual([
      'http://a:8787',
      'https://b.example.com/runt',
    ]);
  });

  it('names the bad entry in a config-invalid error', () => {
    for (const [value, message] of [
      ['http://a:8787,cp2:8787', 'cloud_url: "cp2:8787" is not an http(s) URL'],
      ['ftp://a', 'cloud_url: "ftp://a" is not an http(s) URL'],
      [' , ', 'cloud_url: must be an http(s) URL (or several, comma-separated)'],
    ] as const) {
      let error: unknown;
      try {
        parseCloudUrls(value);
      } catch (e) {
        error = e;
      }
      expect(isAgentError(error) && error.code).toBe('config-invalid');
      expect((error as Error).message).toBe(message);
    }
  });
});

describe('CloudUrlPool', () => {
  it('fetch goes to the current URL and fails over to the next one on a connection error, then stays there', async () => {
    const [dead, b, c] = [await closed(), await server('b'), await server('c')];
    const pool = new CloudUrlPool([dead, b, c]);
    expect(pool.current).toBe(dead);
    const res = await pool.fetch(`${dead}/api/runs?x=1`, { method: 'POST', body: '{}' });
    expect(await res.text()).toBe('b POST /api/runs?x=1');
    expect(pool.current).toBe(b);
    expect(await (await pool.fetch(new URL(`${dead}/healthz`))).text()).toBe('b GET /healthz');
  });

  it('fetch throws the network error when no URL answers, and an abort is not a failed URL', async () => {
    const [x, y] = [await closed(), await closed()];
    const pool = new CloudUrlPool([x, y]);
    await expect(pool.fetch(`${x}/healthz`)).rejects.toThrow(/fetch failed/);
    const live = await server('live');
    const pool2 = new CloudUrlPool([live, x]);
    await expect(pool2.fetch(`${live}/healthz`, { signal: AbortSignal.abort() })).rejects.toThrow();
    expect(pool2.current).toBe(live);
  });

  it('failed() moves on only from the current URL, round-robin; succeeded() makes a URL current', () => {
    const pool = new CloudUrlPool(['http://a', 'http://b', 'http://c']);
    pool.failed('http://b');
    expect(pool.current).toBe('http://a');
    pool.failed('http://a');
    pool.failed('http://b');
    expect(pool.current).toBe('http://c');
    pool.failed('http://c');
    expect(pool.current).toBe('http://a');
    pool.succeeded('http://c');
    expect(pool.current).toBe('http://c');
  });
});
