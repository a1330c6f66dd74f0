import { AgentError } from './agent-error.js';

/**
 * Parses a control plane address: one http(s) URL, or several separated by commas
 * (`RUNT_CLOUD_URL=https://cp1:8787,https://cp2:8787`). Trailing slashes are dropped; a bad entry
 * throws an `AgentError('config-invalid')` naming it.
 *
 * @example
 * parseCloudUrls('http://a:8787, http://b:8787/'); // ['http://a:8787', 'http://b:8787']
 */
export function parseCloudUrls(value: string): string[] {
  const urls = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (urls.length === 0)
    throw new AgentError('config-invalid', 'cloud_url: must be an http(s) URL (or several, comma-separated)');
  for (const url of urls) {
    let ok: boolean;
    try {
      const u = new URL(url);
      ok = u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      ok = false;
    }
    if (!ok) throw new AgentError('config-invalid', `cloud_url: "${url}" is not an http(s) URL`);
  }
  return [...new Set(urls.map((u) => u.replace(/\/+$/, '')))];
}

/**
 * The control plane URLs an agent may use and the one it uses now (the first at start). A URL that
 * fails moves the pool on to the next, round-robin; the link loop's backoff with jitter paces the
 * attempts. {@link CloudUrlPool.fetch} sends HTTP calls to the current URL and, on a network error
 * (not a timeout or an abort), tries each other URL once before giving up.
 *
 * @example
 * const pool = new CloudUrlPool(parseCloudUrls(process.env.RUNT_CLOUD_URL!));
 * const client = new ControlPlaneClient({ url: pool.first, token, fetch: pool.fetch });
 */
export class CloudUrlPool {
  readonly urls: readonly string[];
  #index = 0;

  constructor(urls: string[]) {
    if (urls.length === 0) throw new AgentError('config-invalid', 'cloud_url: no URL');
    this.urls = urls;
  }

  /** The URL clients are built with; {@link fetch} rewrites it to the current one. */
  get first(): string {
    return this.urls[0]!;
  }

  get current(): string {
    return this.urls[this.#index]!;
  }

  /** `url` could not be reached: when it is the current one, move on to the next. */
  failed(url: string): void {
    if (url === this.current) this.#index = (this.#index + 1) % this.urls.length;
  }

  /** `url` answered: use it from now on. */
  succeeded(url: string): void {
    const i = this.urls.indexOf(url);
    if (i >= 0) this.#index = i;
  }

  /** A `fetch` for clients built with {@link first}: requests go to the current URL, failing over on network errors. */
  readonly fetch: typeof globalThis.fetch = async (input, init) => {
    const href = typeof input === 'string' ? input : input instanceof URL ? input.href : undefined;
    if (href === undefined || !href.startsWith(this.first)) return globalThis.fetch(input, init);
    const rest = href.slice(this.first.length);
    let lastError: unknown;
    for (let tried = 0; tried < this.urls.length; tried++) {
      const base = this.current;
      try {
        const res = await globalThis.fetch(base + rest, init);
        this.succeeded(base);
        return res;
      } catch (e) {
        // A timeout or an abort is the caller's decision, not a dead control plane.
        if (init?.signal?.aborted) throw e;
        lastError = e;
        this.failed(base);
      }
    }
    throw lastError;
  };
}
