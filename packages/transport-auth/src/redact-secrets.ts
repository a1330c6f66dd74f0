const REDACTED = '[redacted]';
// Authorization schemes whose parameter is a credential ("Bearer abc", "Basic dXNlcjpwYXNz").
const SCHEME = /\b(Bearer|Basic)(\s+)(?!\[redacted\])[^\s"'`,;]+/gi;
// runt tokens anywhere in a string, even glued to other text; the prefix stays so a reader
// can still tell which kind leaked.
const TOKEN = /(rnt_adm_|rnt_ws_)(?!…\[redacted\])[A-Za-z0-9_-]+/g;
const SENSITIVE_KEY = /token|authorization|password|passwd|secret|cookie|api[-_]?key|private[-_]?key/i;

/**
 * Returns a copy of `value` that is safe to log: in every string, runt tokens become
 * `rnt_ws_…[redacted]` (prefix kept) and `Bearer …` / `Basic …` credentials become
 * `Bearer [redacted]`; objects, arrays, Maps, Sets and errors are deep-copied with strings
 * (keys too) redacted and the whole value under a key such as `token`, `authorization`,
 * `password`, `secret` or `cookie` replaced by `[redacted]`. Cycles are preserved, not followed
 * forever. The input is never modified.
 *
 * @example
 * log.info(redactSecrets({ url, headers: { authorization: `Bearer ${token}` }, note: `got ${token}` }));
 * // { url, headers: { authorization: '[redacted]' }, note: 'got rnt_ws_…[redacted]' }
 */
export function redactSecrets<T>(value: T): T {
  return redact(value, new WeakMap()) as T;
}

function redactString(s: string): string {
  return s.replace(SCHEME, `$1$2${REDACTED}`).replace(TOKEN, `$1…${REDACTED}`);
}

function redact(value: unknown, seen: WeakMap<object, unknown>): unknown {
  if (typeof value === 'string') return redactString(value);
  if (typeof value !== 'object' || value === null) return value;
  const known = seen.get(value);
  if (known !== undefined) return known;

  if (value instanceof Date || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const item of value) out.push(redact(item, seen));
    return out;
  }
  if (value instanceof Map) {
    const out = new Map<unknown, unknown>();
    seen.set(value, out);
    for (const [k, v] of value) {
      const key = redact(k, seen);
      out.set(key, typeof k === 'string' && isSensitiveKey(k) ? hide(v) : redact(v, seen));
    }
    return out;
  }
  if (value instanceof Set) {
    const out = new Set<unknown>();
    seen.set(value, out);
    for (const v of value) out.add(redact(v, seen));
    return out;
  }
  // Plain objects, errors and class instances: same prototype, own properties copied. Errors
  // keep their non-enumerable message/stack/cause, which is where tokens tend to hide.
  const out = Object.create(Object.getPrototypeOf(value) as object | null) as Record<string, unknown>;
  seen.set(value, out);
  const keys =
    value instanceof Error
      ? [
          ...new Set([
            ...Object.keys(value),
            ...['name', 'message', 'stack', 'cause'].filter((k) => Object.hasOwn(value, k)),
          ]),
        ]
      : Object.keys(value);
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k];
    const desc = Object.getOwnPropertyDescriptor(value, k);
    const copied = isSensitiveKey(k) ? hide(v) : redact(v, seen);
    Object.defineProperty(out, redactString(k), {
      value: copied,
      enumerable: desc?.enumerable ?? true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEY.test(key);
}

function hide(v: unknown): unknown {
  return v === undefined || v === null || v === '' ? v : REDACTED;
}
