import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import type { z } from 'zod';
import {
  findUnsafeJson,
  isUnsafeText,
  jsonNestsDeeperThan,
  jsonTextIsSafe,
  MAX_JSON_DEPTH,
} from '@runt/protocol';
import { requestHeader } from '@runt/transport-auth';
import { HttpError } from './errors.js';

/**
 * Reads and validates a JSON body. On @hono/node-server it reads the Node request stream
 * directly (about 3x the throughput of `c.req.json()` measured here), enforcing the size limit
 * while reading; elsewhere (`app.request()` in tests) it falls back to the Fetch body.
 *
 * Errors: 413 `payload-too-large`, 415 for a non-JSON content type, 400 `invalid-json`, and
 * 400 `invalid-request` with zod's issues as `details` — also for JSON nested deeper than
 * `MAX_JSON_DEPTH` and for any string or key holding a NUL or a lone surrogate (text no store
 * can keep), checked here once for every route.
 */
export async function readJson<S extends z.ZodType>(
  c: Context,
  schema: S,
  limitBytes: number,
): Promise<z.infer<S>> {
  const type = requestHeader(c, 'content-type');
  if (type && !/^application\/([a-z.+-]*\+)?json\b/i.test(type)) {
    throw new HttpError('unsupported-media-type', 'send the body as application/json');
  }
  const declared = Number(requestHeader(c, 'content-length') ?? '0');
  if (declared > limitBytes) throw tooLarge(limitBytes);
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const text =
    incoming && !incoming.readableEnded
      ? await readNode(incoming, limitBytes)
      : await readFetch(c, limitBytes);
  if (jsonNestsDeeperThan(text))
    throw new HttpError('invalid-request', `body: nested deeper than ${MAX_JSON_DEPTH} levels`);
  let value: unknown;
  try {
    value = text.length === 0 ? undefined : JSON.parse(text);
  } catch {
    throw new HttpError('invalid-json', 'the request body is not valid JSON');
  }
  if (value === undefined) value = {};
  // The walk only when the text could hide a NUL or lone surrogate (most bodies cannot).
  const unsafe = jsonTextIsSafe(text) ? undefined : findUnsafeJson(value);
  if (unsafe) throw new HttpError('invalid-request', `${unsafe.path || 'body'}: ${unsafe.message}`, [unsafe]);
  return validate(schema, value, 'body');
}

/**
 * Validates a value already parsed (a JSON body, or a link request's `body`): 400
 * `invalid-request` with zod's issues as `details`, the first one in the message.
 *
 * @example
 * const body = validate(claimRunRequestSchema, message.body, 'body');
 */
export function validate<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    const first = issues[0];
    throw new HttpError(
      'invalid-request',
      first ? `${first.path || where}: ${first.message}` : `invalid ${where === 'body' ? 'request' : where}`,
      issues,
    );
  }
  return parsed.data;
}

function tooLarge(limit: number): HttpError {
  return new HttpError('payload-too-large', `the request body is larger than ${limit} bytes`);
}

async function readNode(req: IncomingMessage, limit: number): Promise<string> {
  return (await readNodeBytes(req, limit)).toString('utf8');
}

async function readFetch(c: Context, limit: number): Promise<string> {
  const buf = await c.req.arrayBuffer();
  if (buf.byteLength > limit) throw tooLarge(limit);
  return new TextDecoder().decode(buf);
}

/**
 * Validates the query string with a zod schema (use `z.coerce` for numbers); errors are 400
 * `invalid-request` with zod's issues as `details`, like {@link readJson}.
 *
 * @example
 * const { after_seq } = readQuery(c, listEventsQuerySchema);
 */
export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  return validate(schema, c.req.query(), 'query');
}

/**
 * Reads a raw body (any content type) up to `limitBytes`, straight from the Node stream when
 * there is one. 413 `payload-too-large` beyond the limit.
 *
 * @example
 * const bytes = await readBytes(c, 64 * 1024 * 1024);
 */
export async function readBytes(c: Context, limitBytes: number): Promise<Buffer> {
  const declared = Number(requestHeader(c, 'content-length') ?? '0');
  if (declared > limitBytes) throw tooLarge(limitBytes);
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming && !incoming.readableEnded) return readNodeBytes(incoming, limitBytes);
  const buf = await c.req.arrayBuffer();
  if (buf.byteLength > limitBytes) throw tooLarge(limitBytes);
  return Buffer.from(buf);
}

function readNodeBytes(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.resume(); // drain so the connection can answer
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/**
 * Middleware for every request: a path or query whose decoded text holds a NUL (`%00`), is not
 * valid UTF-8 percent-encoding, or has a lone surrogate is a 400 `invalid-request` before any
 * route turns it into an id or a SQL parameter.
 */
export async function rejectUnsafeUrl(c: Context, next: () => Promise<void>): Promise<void> {
  const url = new URL(c.req.url);
  for (const segment of url.pathname.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw new HttpError('invalid-request', 'the path is not valid percent-encoded UTF-8');
    }
    if (isUnsafeText(decoded))
      throw new HttpError('invalid-request', 'the path must not contain NUL characters');
  }
  for (const [key, value] of url.searchParams) {
    if (isUnsafeText(key) || isUnsafeText(value))
      throw new HttpError(
        'invalid-request',
        `query ${JSON.stringify(key.replace(/\0/g, ''))}: must not contain NUL characters`,
      );
  }
  await next();
}
