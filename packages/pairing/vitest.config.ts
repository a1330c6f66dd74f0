import { defineConfig } from 'vitest/config';

// Store tests create a database per test on PGlite and on the Postgres server.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 60_000 } });
