import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { c as createTar } from 'tar';
import { describe, expect, it } from 'vitest';
import { materializeBundle } from './materialize-bundle.js';

async function pack(cwd: string, files: string[], gzip: boolean): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  const stream = createTar({ cwd, gzip, portable: true }, files);
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
  return new Uint8Array(Buffer.concat(chunks));
}
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A raw ustar header + body for names node-tar would refuse to create. */
function rawTar(name: string, body: string): Uint8Array {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const data = Buffer.alloc(Math.ceil(body.length / 512) * 512);
  data.write(body);
  return new Uint8Array(Buffer.concat([header, data, Buffer.alloc(1024)]));
}

describe('materializeBundle', () => {
  it('unpacks a tar.gz and a plain tar after checking the sha256', async () => {
    const src = mkdtempSync(join(tmpdir(), 'runt-src-'));
    mkdirSync(join(src, 'sub'));
    writeFileSync(join(src, 'hello.txt'), 'hello\n');
    writeFileSync(join(src, 'sub', 'x.sh'), 'echo x\n');
    for (const gzip of [true, false]) {
      const bytes = await pack(src, ['hello.txt', 'sub'], gzip);
      const dest = join(mkdtempSync(join(tmpdir(), 'runt-dest-')), 'work');
      await materializeBundle(bytes, sha(bytes), dest);
      expect(readFileSync(join(dest, 'hello.txt'), 'utf8')).toBe('hello\n');
      expect(readFileSync(join(dest, 'sub', 'x.sh'), 'utf8')).toBe('echo x\n');
    }
  });

  it('refuses a sha256 mismatch before writing anything', async () => {
    const bytes = rawTar('a.txt', 'a');
    const dest = join(mkdtempSync(join(tmpdir(), 'runt-dest-')), 'work');
    await expect(materializeBundle(bytes, '0'.repeat(64), dest)).rejects.toMatchObject({
      code: 'bundle-invalid',
    });
    expect(existsSync(dest)).toBe(false);
  });

  it('refuses entries that leave the directory, absolute paths and symlinks', async () => {
    const root = mkdtempSync(join(tmpdir(), 'runt-dest-'));
    for (const name of ['../escape.txt', 'a/../../escape.txt', '/tmp/abs-escape.txt']) {
      const bytes = rawTar(name, 'pwned');
      await expect(materializeBundle(bytes, sha(bytes), join(root, 'work'))).rejects.toThrow(/unsafe bundle/);
    }
    expect(existsSync(join(root, 'escape.txt'))).toBe(false);
    expect(existsSync(join(root, 'work'))).toBe(false);

    const src = mkdtempSync(join(tmpdir(), 'runt-src-'));
    symlinkSync('/etc/passwd', join(src, 'link'));
    const bytes = await pack(src, ['link'], false);
    await expect(materializeBundle(bytes, sha(bytes), join(root, 'work'))).rejects.toThrow(
      /SymbolicLink entries are not allowed/,
    );
  });

  it('refuses bytes that are not a tar', async () => {
    const bytes = new TextEncoder().encode('definitely not a tar archive'.repeat(40));
    await expect(
      materializeBundle(bytes, sha(bytes), join(mkdtempSync(join(tmpdir(), 'runt-dest-')), 'w')),
    ).rejects.toMatchObject({ code: 'bundle-invalid' });
  });
});
