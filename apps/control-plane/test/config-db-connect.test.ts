import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';

describe('RUNT_DB_CONNECT_TIMEOUT_MS', () => {
  it('is unset by default, 0 (no bound) or at least 100 ms; anything else is refused', () => {
    expect(loadConfig({}).dbConnectTimeoutMs).toBeUndefined();
    expect(loadConfig({ RUNT_DB_CONNECT_TIMEOUT_MS: '0' }).dbConnectTimeoutMs).toBe(0);
    expect(loadConfig({ RUNT_DB_CONNECT_TIMEOUT_MS: '2500' }).dbConnectTimeoutMs).toBe(2500);
    expect(() => loadConfig({ RUNT_DB_CONNECT_TIMEOUT_MS: '50' })).toThrow(/RUNT_DB_CONNECT_TIMEOUT_MS/);
    expect(() => loadConfig({ RUNT_DB_CONNECT_TIMEOUT_MS: '-1' })).toThrow(/RUNT_DB_CONNECT_TIMEOUT_MS/);
  });
});
