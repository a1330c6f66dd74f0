import { isUnsafeText } from './json-safety.js';

/** Most bytes of output one base64 `log` event carries (64 KiB of base64 text). */
export const LOG_EVENT_MAX_BYTES = 48 * 1024;

export type LogEventStream = 'stdout' | 'stderr';

/** A `log` event's payload: text as is, or bytes that are not storable text in base64. */
export interface LogPayload {
  stream: LogEventStream;
  data: string;
  /** Present when `data` is the base64 of the output's bytes (not UTF-8, or holding a NUL). */
  encoding?: 'base64';
  [key: string]: unknown;
}

/**
 * The `log` payloads for one chunk of output. Output that is valid UTF-8 text without a NUL
 * (`text` decodes `bytes` exactly) goes as text; anything else — a NUL, bytes that are not
 * UTF-8, a multi-byte character cut by a read — as base64 of the bytes, in pieces of at most
 * `LOG_EVENT_MAX_BYTES`, so every byte sequence round-trips. Without `bytes`, the text's UTF-8.
 *
 * @example
 * logPayloads('stdout', 'a\0b\n'); // [{ stream: 'stdout', data: 'YQBiCg==', encoding: 'base64' }]
 */
export function logPayloads(stream: LogEventStream, text: string, bytes?: Uint8Array): LogPayload[] {
  const raw = bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : undefined;
  if (!isUnsafeText(text) && (!raw || raw.equals(Buffer.from(text, 'utf8')))) return [{ stream, data: text }];
  const all = raw ?? Buffer.from(text, 'utf8');
  const out: LogPayload[] = [];
  for (let i = 0; i < all.length; i += LOG_EVENT_MAX_BYTES)
    out.push({
      stream,
      data: all.subarray(i, i + LOG_EVENT_MAX_BYTES).toString('base64'),
      encoding: 'base64',
    });
  return out.length > 0 ? out : [{ stream, data: '' }];
}

/**
 * The bytes a `log` event's payload carries, whichever way it was stored.
 *
 * @example
 * process.stdout.write(logBytes(event.payload));
 */
export function logBytes(payload: Record<string, unknown>): Buffer {
  const data = typeof payload.data === 'string' ? payload.data : '';
  return payload.encoding === 'base64' ? Buffer.from(data, 'base64') : Buffer.from(data, 'utf8');
}
