import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    bench: 'src/bench.ts',
    'peer-host': 'src/peer-host.ts',
    'cp-host': 'src/cp-host.ts',
    'replicas-bench': 'src/replicas-bench.ts',
    'notify-floor-replica': 'src/notify-floor-replica.ts',
    'panel-bench': 'src/panel-bench.ts',
    chaos: 'src/chaos.ts',
    'links-bench': 'src/links-bench.ts',
    'link-doubles': 'src/link-doubles.ts',
    'event-fk-bench': 'src/event-fk-bench.ts',
    'heap-sample': 'src/heap-sample.ts',
    'cpu-profile-top': 'src/cpu-profile-cli.ts',
  },
  format: ['esm'],
  dts: { entry: { index: 'src/index.ts' } },
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
  // Everything from node_modules stays an import (the peers are devDependencies of this bench-only package).
  skipNodeModulesBundle: true,
});
