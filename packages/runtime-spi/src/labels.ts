import { MANAGED_LABEL } from './runtime.js';

/**
 * The caller's labels plus `runt.managed=true`. The managed label always wins, so a caller
 * cannot create an instance that `list()` would then fail to find.
 * @example
 * withManagedLabels({ 'runt.run-id': 'r1' }) // { 'runt.run-id': 'r1', 'runt.managed': 'true' }
 */
export function withManagedLabels(labels: Record<string, string> = {}): Record<string, string> {
  return { ...labels, [MANAGED_LABEL]: 'true' };
}

/**
 * True when every label in `filter` is present in `labels` with exactly that value. An
 * empty or absent filter matches everything.
 * @example
 * matchesLabels({ a: '1', b: '2' }, { a: '1' }) // true
 */
export function matchesLabels(labels: Record<string, string>, filter: Record<string, string> = {}): boolean {
  return Object.entries(filter).every(([key, value]) => labels[key] === value);
}
