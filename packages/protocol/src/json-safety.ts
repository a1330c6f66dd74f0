/** How deep a JSON document sent to the control plane (HTTP body or link message) may nest. */
export const MAX_JSON_DEPTH = 64;

/** True when `s` holds a NUL or a lone UTF-16 surrogate: text Postgres cannot store or that is not Unicode. */
export function isUnsafeText(s: string): boolean {
  return s.includes('\u0000') || LONE_SURROGATE.test(s);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * True when no string or key parsed from this JSON text can hold a NUL or a lone surrogate: the
 * text holds neither and has no `\u` escape (the only other way to write one). A linear scan
 * of the text, with no allocation; when it answers true, {@link findUnsafeJson}'s walk of the
 * parsed value (a path string per node) finds nothing beyond the depth that
 * {@link jsonNestsDeeperThan} checks, so the hot paths skip it (issue 9, cheap hot paths).
 *
 * @example
 * jsonTextIsSafe('{"a":"b"}');        // true
 * jsonTextIsSafe('{"a":"\\u0000"}'); // false: walk the value
 */
export function jsonTextIsSafe(text: string): boolean {
  return !text.includes('\\u') && !isUnsafeText(text);
}

/**
 * True when JSON text nests objects/arrays deeper than `maxDepth`. A linear scan of the text
 * (brackets inside strings do not count), so it runs before `JSON.parse` and before anything
 * that walks the value recursively.
 */
export function jsonNestsDeeperThan(text: string, maxDepth = MAX_JSON_DEPTH): boolean {
  // Every level opens with a bracket: a text with at most `maxDepth` of them cannot nest deeper.
  // A few native searches answer that for almost every message, where the scan below looks at
  // each character (~1 µs of a link's 450-character report, half its JSON.parse; issue 9).
  if (bracketsAtMost(text, maxDepth)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c)
        i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x7b || ch === 0x5b) {
      if (++depth > maxDepth) return true;
    } else if (ch === 0x7d || ch === 0x5d) depth--;
  }
  return false;
}

/** True when `text` holds at most `n` opening brackets (`{` or `[`, in strings or not). */
function bracketsAtMost(text: string, n: number): boolean {
  let count = 0;
  for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) if (++count > n) return false;
  for (let i = text.indexOf('['); i !== -1; i = text.indexOf('[', i + 1)) if (++count > n) return false;
  return true;
}

/**
 * The first problem in a parsed JSON value that no schema should have to think about: a
 * string (value or key) with a NUL or a lone surrogate, or nesting deeper than `maxDepth`.
 * `undefined` when there is none. Iterative, so a hostile value cannot overflow the stack.
 *
 * @example
 * const problem = findUnsafeJson(JSON.parse(text));
 * if (problem) throw new Error(`${problem.path || 'body'}: ${problem.message}`);
 */
export function findUnsafeJson(
  value: unknown,
  maxDepth = MAX_JSON_DEPTH,
): { path: string; message: string } | undefined {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [{ value, path: '', depth: 0 }];
  while (stack.length > 0) {
    const { value: v, path, depth } = stack.pop()!;
    if (typeof v === 'string') {
      if (isUnsafeText(v))
        return { path, message: 'text must not contain NUL characters or unpaired surrogates' };
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= maxDepth) return { path, message: `nested deeper than ${maxDepth} levels` };
    const entries = Array.isArray(v) ? v.map((item, i) => [String(i), item] as const) : Object.entries(v);
    for (const [key, item] of entries) {
      const at = path ? `${path}.${key}` : key;
      if (isUnsafeText(key))
        return { path: at, message: 'keys must not contain NUL characters or unpaired surrogates' };
      stack.push({ value: item, path: at, depth: depth + 1 });
    }
  }
  return undefined;
}
