import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FakeRuntime } from '@runt/runtime-spi/fake';
import { describe, expect, it } from 'vitest';
import { defaultRuntimes } from './default-runtimes.js';

describe('defaultRuntimes', () => {
  it('gives a fake runtime that keeps no record of its calls (it would grow with every run: issue 9)', async () => {
    const rt = (await defaultRuntimes(mkdtempSync(join(tmpdir(), 'runt-rt-'))).get('fake')) as FakeRuntime;
    for (let i = 0; i < 3; i++) {
      const inst = await rt.create({ name: `run-${i}`, command: ['/bin/sh', '-c', 'exit 0'] });
      await rt.start(inst.id);
      expect(await rt.wait(inst.id)).toEqual({ exitCode: 0 });
      await rt.remove(inst.id);
    }
    expect(rt.calls).toEqual([]);
    await rt.close();
  });
});
