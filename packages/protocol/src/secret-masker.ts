import { SECRET_MASK } from './secret-env.js';

/** What one `push` lets out: the masked text, and how many characters of the raw output it covers. */
export interface Masked {
  text: string;
  /** Raw characters consumed (what the re-adoption skip counts); the held-back tail is not among them. */
  raw: number;
}

/**
 * One whole text with every secret value masked (`***`): a failure message, an event's text
 * field — anything that is not a stream cut into chunks.
 *
 * @example
 * maskText('login failed for s3cr3t', ['s3cr3t']) // 'login failed for ***'
 */
export function maskText(text: string, secrets: Iterable<string>): string {
  const m = new SecretMasker(secrets);
  return m.active ? m.push(text).text + m.end().text : text;
}

/**
 * Masks secret values in one output stream, as GitHub Actions does: every occurrence of a
 * value is replaced by `***` (`SECRET_MASK`); overlapping occurrences of several values are
 * masked as one. A value split across chunks is still found: the tail of each chunk that could
 * be the start of a value (at most the longest value's length − 1 characters, more only while
 * it is inside a match) is held back until the next chunk or {@link end}.
 *
 * @example
 * const m = new SecretMasker(['s3cr3t']);
 * m.push('token: s3c').text + m.push('r3t\n').text + m.end().text // 'token: ***\n'
 */
export class SecretMasker {
  readonly #secrets: string[];
  #carry = '';

  constructor(secrets: Iterable<string>) {
    // the empty string would match everywhere; longest first only matters for readability
    this.#secrets = [...new Set(secrets)].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  }

  /** Whether there is anything to mask (without secrets output passes through untouched). */
  get active(): boolean {
    return this.#secrets.length > 0;
  }

  /** Masks a chunk; part of its tail may be held back for the next call. */
  push(data: string): Masked {
    if (!this.active) return { text: data, raw: data.length };
    const buf = this.#carry + data;
    const spans = this.#matches(buf);
    let cut = this.#holdFrom(buf);
    // never cut inside a match: hold the whole match back instead (it is seen whole next time)
    for (const [a, b] of spans) if (a < cut && cut < b) cut = a;
    this.#carry = buf.slice(cut);
    return { text: mask(buf, spans, cut), raw: cut };
  }

  /** The held-back tail, masked (the stream ended). */
  end(): Masked {
    const buf = this.#carry;
    this.#carry = '';
    return { text: mask(buf, this.#matches(buf), buf.length), raw: buf.length };
  }

  /** Every occurrence of every value in `buf`, overlapping ones merged, as disjoint sorted spans [start, end). */
  #matches(buf: string): Array<[number, number]> {
    const raw: Array<[number, number]> = [];
    for (const s of this.#secrets)
      for (let i = buf.indexOf(s); i !== -1; i = buf.indexOf(s, i + 1)) raw.push([i, i + s.length]);
    raw.sort((x, y) => x[0] - y[0]);
    const merged: Array<[number, number]> = [];
    for (const [a, b] of raw) {
      const last = merged[merged.length - 1];
      if (last && a < last[1]) last[1] = Math.max(last[1], b);
      else merged.push([a, b]);
    }
    return merged;
  }

  /** The first position whose rest of `buf` is a proper prefix of some value (`buf.length` when none). */
  #holdFrom(buf: string): number {
    const longest = this.#secrets[0]!.length;
    for (let p = Math.max(0, buf.length - longest + 1); p < buf.length; p++) {
      const rest = buf.slice(p);
      if (this.#secrets.some((s) => s.length > rest.length && s.startsWith(rest))) return p;
    }
    return buf.length;
  }
}

/** `buf[0, upTo)` with the spans (clipped to it) replaced by the mask. */
function mask(buf: string, spans: Array<[number, number]>, upTo: number): string {
  let out = '';
  let at = 0;
  for (const [a, b] of spans) {
    if (a >= upTo) break;
    out += buf.slice(at, a) + SECRET_MASK;
    at = Math.min(b, upTo);
  }
  return out + buf.slice(at, upTo);
}
