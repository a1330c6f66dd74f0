/**
 * The largest request body a control plane takes by default (`RUNT_BODY_LIMIT`), in bytes. The
 * agent sizes its event batches and status reports under it.
 */
export const BODY_LIMIT_BYTES_DEFAULT = 1024 * 1024;

/**
 * Most UTF-16 code units of output one `log` event carries: even when JSON escapes every unit
 * (6 bytes for a control character or a lone surrogate), an event stays far below the body limit.
 */
export const LOG_EVENT_MAX_CHARS = 64 * 1024;

/**
 * Splits output into pieces of at most `max` UTF-16 code units without cutting a surrogate pair.
 *
 * @example
 * splitLogData('a'.repeat(5), 2); // ['aa', 'aa', 'a']
 */
export function splitLogData(data: string, max = LOG_EVENT_MAX_CHARS): string[] {
  if (data.length <= max) return [data];
  const out: string[] = [];
  for (let i = 0; i < data.length;) {
    let end = Math.min(i + max, data.length);
    const last = data.charCodeAt(end - 1);
    if (end < data.length && end - i > 1 && last >= 0xd800 && last <= 0xdbff) end--;
    out.push(data.slice(i, end));
    i = end;
  }
  return out;
}
