import { describe, expect, it } from 'vitest';
import { MANAGED_LABEL, matchesLabels, withManagedLabels } from './index.js';

describe('labels', () => {
  it('adds runt.managed=true and never lets a caller override it', () => {
    expect(withManagedLabels({ 'runt.run-id': 'r1', [MANAGED_LABEL]: 'false' })).toEqual({
      'runt.run-id': 'r1',
      'runt.managed': 'true',
    });
    expect(withManagedLabels()).toEqual({ 'runt.managed': 'true' });
  });

  it('matches when every filter label is present with the same value', () => {
    const labels = { a: '1', b: '2' };
    expect(matchesLabels(labels, { a: '1' })).toBe(true);
    expect(matchesLabels(labels, {})).toBe(true);
    expect(matchesLabels(labels)).toBe(true);
    expect(matchesLabels(labels, { a: '2' })).toBe(false);
    expect(matchesLabels(labels, { c: '1' })).toBe(false);
  });
});
