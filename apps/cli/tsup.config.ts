import { defineConfig } from 'tsup';

export default defineConfig({
  // oclif discovers commands by walking dist/commands, so every command is its own entry.
  entry: ['src/index.ts', 'src/commands/**/*.ts'],
  format: ['esm'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
});
