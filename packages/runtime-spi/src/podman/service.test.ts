import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { PodmanService } from './service.js';

/**
 * A stand-in for `podman system service --time N unix://SOCKET`: answers `/_ping`, and
 * `/libpod/slow` after 600 ms. The first one started lingers 300 ms after SIGTERM and
 * then drops its open connections (as a service ending mid-request does); later ones end at once.
 */
function fakePodman(dir: string): string {
  const path = join(dir, 'podman');
  const marker = join(dir, 'first-started');
  writeFileSync(
    path,
    `#!${process.execPath}
const { createServer } = require('node:http');
const { existsSync, writeFileSync } = require('node:fs');
const first = !existsSync(${JSON.stringify(marker)});
if (first) writeFileSync(${JSON.stringify(marker)}, '');
const socket = process.argv[process.argv.length - 1].replace(/^unix:\\/\\//, '');
const open = new Set();
const server = createServer((req, res) => {
  if (req.url === '/_ping') return res.end('OK');
  open.add(req.socket);
  if (first) writeFileSync(${JSON.stringify(marker)} + '-request', '');
  setTimeout(() => res.end('slow answer'), 600);
});
server.listen(socket);
process.on('SIGTERM', () => {
  if (!first) process.exit(0);
  setTimeout(() => {
    for (const s of open) s.destroy();
    process.exit(0);
  }, 300);
});
`,
  );
  chmodSync(path, 0o755);
  return path;
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

it('a call that fails on a service already ended does not end the one started after it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'runt-podman-service-'));
  dirs.push(dir);
  const service = new PodmanService(fakePodman(dir));
  try {
    // A call in flight on the first service, which is then ended (an adapter closing, a reset).
    const onFirst = service.call('POST', '/slow');
    await new Promise((resolve) => {
      const poll = setInterval(
        () => existsSync(join(dir, 'first-started-request')) && resolve(clearInterval(poll)),
        5,
      );
    });
    service.stop();
    // The next call starts a second service; the first one's call fails while it is in flight.
    const onSecond = service.call('POST', '/slow');
    expect(await onFirst).toBeUndefined(); // dropped: the caller uses the CLI
    // Before the fix, that failure ended the second service too: this call (a `start`, say)
    // failed after the service may have done it, and its caller ran the CLI's `start` again.
    expect(await onSecond).toEqual({ status: 200, body: 'slow answer' });
  } finally {
    service.stop();
  }
});

it('a service that accepts the connection and never answers /_ping does not hold the caller: it falls back to the CLI', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'runt-podman-service-'));
  dirs.push(dir);
  const path = join(dir, 'podman');
  // A hung `podman system service`: it listens, reads requests and answers none.
  writeFileSync(
    path,
    `#!${process.execPath}
const { createServer } = require('node:http');
const socket = process.argv[process.argv.length - 1].replace(/^unix:\\/\\//, '');
createServer(() => undefined).listen(socket);
process.on('SIGTERM', () => process.exit(0));
`,
  );
  chmodSync(path, 0o755);
  const service = new PodmanService(path, { startTimeoutMs: 3_000 });
  try {
    // Before, the first ping waited for an answer forever (the start deadline was only looked
    // at between pings), and so did this call and every call after it.
    const answer = await Promise.race([
      service.call('GET', '/containers/json'),
      new Promise((resolve) => setTimeout(resolve, 30_000, 'hung')).then((v) => v),
    ]);
    expect(answer).toBeUndefined();
  } finally {
    service.stop();
  }
});
