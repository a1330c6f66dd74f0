import type { Context } from 'hono';

/** The Node request `@hono/node-server` passes as `c.env.incoming`, as far as headers go. */
interface IncomingHeaders {
  rawHeaders: string[];
}

/**
 * A request header as `c.req.header(name)` answers it (several of the same name joined with
 * `, `; `undefined` when absent), read on `@hono/node-server` straight from the Node request's
 * raw header list: `c.req.header()` builds a Fetch `Headers` of every header of the request on
 * first use, which was the largest share of a bare request's cost in the control plane's
 * profile (more so for `fetch` clients, which send seven headers). `name` in lower case.
 *
 * @example
 * const type = requestHeader(c, 'content-type');
 */
export function requestHeader(c: Context, name: string): string | undefined {
  const raw = (c.env as { incoming?: IncomingHeaders } | undefined)?.incoming?.rawHeaders;
  if (!Array.isArray(raw)) return c.req.header(name);
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i]!;
    if (key.length === name.length && key.toLowerCase() === name)
      value = value === undefined ? raw[i + 1]! : `${value}, ${raw[i + 1]!}`;
  }
  return value;
}
