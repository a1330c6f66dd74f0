import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { isAbsolute, normalize } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { t as listTar, x as extractTar } from 'tar';
import { AgentError } from './agent-error.js';

const ALLOWED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory']);

/**
 * Checks that `bytes` hash to `sha256`, then unpacks the tar (gzipped or not) into `dir`.
 * Unsafe archives are refused before anything is written: absolute paths, `..` segments,
 * symlinks, hard links and device files all fail with `AgentError('bundle-invalid')`, so a
 * bundle can never write outside the run's working directory.
 *
 * @example
 * await materializeBundle(await client.downloadBundle(sha), sha, '/var/lib/runt/work/run_1');
 */
export async function materializeBundle(bytes: Uint8Array, sha256: string, dir: string): Promise<void> {
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256)
    throw new AgentError(
      'bundle-invalid',
      `bundle ${sha256.slice(0, 12)}… does not match its sha256 (got ${actual.slice(0, 12)}…)`,
    );

  const problems: string[] = [];
  try {
    await pipeline(
      Readable.from([Buffer.from(bytes)]),
      listTar({
        strict: true,
        onReadEntry: (entry) => {
          const p = entry.path;
          if (!ALLOWED_TYPES.has(entry.type)) problems.push(`${p}: ${entry.type} entries are not allowed`);
          else if (isAbsolute(p) || /^[A-Za-z]:/.test(p)) problems.push(`${p}: absolute path`);
          else if (normalize(p).split(/[\\/]/).includes('..'))
            problems.push(`${p}: leaves the working directory`);
          entry.resume();
        },
      }),
    );
  } catch (e) {
    throw new AgentError('bundle-invalid', `bundle is not a tar archive: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (problems.length > 0)
    throw new AgentError('bundle-invalid', `unsafe bundle: ${problems.slice(0, 3).join('; ')}`);

  await mkdir(dir, { recursive: true, mode: 0o700 });
  await pipeline(
    Readable.from([Buffer.from(bytes)]),
    extractTar({ cwd: dir, strict: true, preservePaths: false, preserveOwner: false }),
  );
}
