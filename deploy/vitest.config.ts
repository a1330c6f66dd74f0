import { defineConfig } from 'vitest/config';

// Building the image (first run: the Node base and the host build) and starting PGlite in a
// container take minutes on a loaded 2-core machine.
export default defineConfig({ test: { testTimeout: 300_000, hookTimeout: 600_000 } });
