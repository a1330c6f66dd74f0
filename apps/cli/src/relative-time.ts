/**
 * A timestamp as tables show it: how long ago, in the largest whole unit (`42s ago`, `5m ago`,
 * `3h ago`, `2d ago`), as `docker ps` and `gh run list` do. `--json` keeps the ISO timestamp.
 *
 * @example
 * relativeTime('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:05:30Z')); // '5m ago'
 */
export function relativeTime(iso: string, now: number = Date.now()): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  const s = Math.max(0, Math.floor((now - then) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}
