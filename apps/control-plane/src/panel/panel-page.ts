import type { Context } from 'hono';
import { HttpError } from '../errors.js';
import { layout, type Html } from './layout.js';

/** Renders a page inside the frame. */
export function page(
  c: Context,
  title: string,
  body: Html,
  opts: { current?: string; status?: number; signedIn?: boolean } = {},
) {
  return c.html(
    layout({
      title,
      body,
      signedIn: opts.signedIn ?? true,
      ...(opts.current ? { current: opts.current } : {}),
    }),
    (opts.status ?? 200) as 200,
  );
}

/** A form body (urlencoded or multipart), bounded like the JSON bodies. */
export async function readForm(c: Context, limit: number): Promise<Record<string, string>> {
  const length = Number(c.req.header('content-length') ?? '0');
  if (length > limit) throw new HttpError('payload-too-large', `the form is larger than ${limit} bytes`);
  const body = await c.req.parseBody();
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(body)) if (typeof v === 'string') out[k] = v;
  return out;
}
