/** A message changed in one place, named after the change (`run.status = x`, `delete id`, …). */
export interface Mutation {
  name: string;
  msg: unknown;
}

const label = (v: unknown): string =>
  typeof v === 'object' && v !== null
    ? Object.getPrototypeOf(v) === null
      ? 'null-prototype {}'
      : JSON.stringify(v)
    : String(v);

/**
 * Every path of `base` set to each of `odd` in turn, deleted, and (on objects) given an unknown
 * neighbour key or an own `__proto__` (as `JSON.parse` makes it): what the fast paths' tests feed
 * both a fast path and its schema, to find any message the two answer differently.
 *
 * @example
 * for (const { name, msg } of mutations(goodMessage, [undefined, null, '', 1.5])) check(name, msg);
 */
export function mutations(base: unknown, odd: readonly unknown[]): Mutation[] {
  const out: Mutation[] = [];
  const at = (clone: unknown, path: (string | number)[]) =>
    path.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], clone) as Record<
      string | number,
      unknown
    >;
  const walk = (path: (string | number)[], node: unknown) => {
    if (typeof node !== 'object' || node === null) return;
    const keys = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    for (const k of keys) {
      for (const v of odd) {
        const c = structuredClone(base);
        at(c, path)[k] = v;
        out.push({ name: `${[...path, k].join('.')} = ${label(v)}`, msg: c });
      }
      const d = structuredClone(base);
      if (Array.isArray(at(d, path))) (at(d, path) as unknown as unknown[]).splice(k as number, 1);
      else delete at(d, path)[k];
      out.push({ name: `delete ${[...path, k].join('.')}`, msg: d });
      walk([...path, k], (node as Record<string | number, unknown>)[k]);
    }
    if (!Array.isArray(node)) {
      const e = structuredClone(base);
      at(e, path).unknown_key = 1;
      out.push({ name: `${path.join('.')}.unknown_key`, msg: e });
      const p = structuredClone(base);
      at(p, path)['__proto__'] = 'x';
      out.push({ name: `${path.join('.')}.__proto__ own key`, msg: JSON.parse(JSON.stringify(p)) });
    }
  };
  walk([], base);
  return out;
}
