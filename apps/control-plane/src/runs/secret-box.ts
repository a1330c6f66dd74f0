import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Sealing of run secrets at rest (issue 12): AES-256-GCM with a random 96-bit IV per value, the
 * key's id stored beside the ciphertext, the run id and env name bound as additional data (a
 * sealed value copied onto another run or name does not open). The key comes from
 * `RUNT_SECRET_KEY` (base64 of 32 bytes) or `RUNT_SECRET_KEY_FILE`; with neither, a control
 * plane on its data dir (PGlite) generates one once into `<data dir>/secret-key` (0600). On
 * Postgres with no key configured there is no box: secret submissions are refused with
 * `secrets-unavailable`, so replicas never seal with keys the others lack.
 */

/** One sealed value as the `runs.secret_env` column stores it (all base64). */
export interface SealedValue {
  /** The key's id: the first 16 hex digits of the SHA-256 of the key. */
  kid: string;
  iv: string;
  ct: string;
  tag: string;
}

/** The `runs.secret_env` column: sealed values by env name. */
export type SealedEnv = Record<string, SealedValue>;

/** A stored secret that cannot be opened (no key with its id here, or it does not authenticate). */
export class SecretUnavailableError extends Error {
  override readonly name = 'SecretUnavailableError';
}

/** What secret env entries need: one key, sealing and opening. */
export class SecretBox {
  readonly keyId: string;
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('a secret key is 32 bytes (base64 of 32 random bytes)');
    this.#key = key;
    this.keyId = keyIdOf(key);
  }

  /**
   * Seals every value of `secrets` for `runId`.
   *
   * @example
   * const sealed = box.seal('run_1', { TOKEN: 's3cr3t' });
   */
  seal(runId: string, secrets: Record<string, string>): SealedEnv {
    const out: SealedEnv = {};
    for (const [name, value] of Object.entries(secrets)) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
      cipher.setAAD(aad(runId, name));
      const ct = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
      out[name] = {
        kid: this.keyId,
        iv: iv.toString('base64'),
        ct: ct.toString('base64'),
        tag: cipher.getAuthTag().toString('base64'),
      };
    }
    return out;
  }

  /**
   * Opens the sealed values of `runId`; throws {@link SecretUnavailableError} naming the entry
   * when one was sealed with another key or does not authenticate.
   *
   * @example
   * const { TOKEN } = box.open('run_1', sealed);
   */
  open(runId: string, sealed: SealedEnv): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, s] of Object.entries(sealed)) {
      if (s.kid !== this.keyId)
        throw new SecretUnavailableError(
          `secret env ${name} was sealed with key ${s.kid}; this control plane has key ${this.keyId}`,
        );
      try {
        const decipher = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(s.iv, 'base64'));
        decipher.setAAD(aad(runId, name));
        decipher.setAuthTag(Buffer.from(s.tag, 'base64'));
        out[name] = Buffer.concat([decipher.update(Buffer.from(s.ct, 'base64')), decipher.final()]).toString(
          'utf8',
        );
      } catch {
        throw new SecretUnavailableError(`secret env ${name} does not open with key ${this.keyId}`);
      }
    }
    return out;
  }
}

const aad = (runId: string, name: string) => Buffer.from(`runt-secret-env\0${runId}\0${name}`, 'utf8');

function keyIdOf(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

function parseKey(text: string, where: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) throw new Error(`${where} must be the base64 of 32 bytes (got ${key.length} bytes)`);
  return key;
}

/** Where the secret key comes from. */
export interface SecretKeySource {
  /** `RUNT_SECRET_KEY`: base64 of 32 bytes. */
  key?: string | undefined;
  /** `RUNT_SECRET_KEY_FILE`: a file holding that. */
  keyFile?: string | undefined;
  /** Generate the key into this file (0600) when neither is set and it does not exist; undefined on Postgres. */
  generateAt?: string | undefined;
}

/**
 * The box for the configured key, or `undefined` when there is none (Postgres without a key).
 * A generated key is written once, atomically and never over an existing file.
 *
 * @example
 * const box = await loadSecretBox({ key: process.env.RUNT_SECRET_KEY, generateAt: '.runt/secret-key' });
 */
export async function loadSecretBox(src: SecretKeySource): Promise<SecretBox | undefined> {
  if (src.key) return new SecretBox(parseKey(src.key, 'RUNT_SECRET_KEY'));
  if (src.keyFile) return new SecretBox(parseKey(await readFile(src.keyFile, 'utf8'), src.keyFile));
  if (!src.generateAt) return undefined;
  const path = src.generateAt;
  try {
    return new SecretBox(parseKey(await readFile(path, 'utf8'), path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  try {
    // link: never replaces a key another process wrote first (that one wins, and is read below)
    await link(tmp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  return new SecretBox(parseKey(await readFile(path, 'utf8'), path));
}
