import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'docker/index': 'src/docker/index.ts',
    'podman/index': 'src/podman/index.ts',
    'process/index': 'src/process/index.ts',
    'fake/index': 'src/fake/index.ts',
    'conformance/index': 'src/conformance/index.ts',
  },
  format: ['esm'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
});
