// `pnpm --filter @runt/bench bench:links`: the links part of the bench alone (see links.ts).
import { describeLinks, hardFdLimit, linksToMeasure, measureLinks } from './links.js';
import { loadAverage } from './stats.js';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;

const links = linksToMeasure();
const backends = env('BENCH_BACKENDS', 'postgres,pglite').split(',') as Array<'postgres' | 'pglite'>;
console.log(
  `links bench: ${links} links (hard fd limit ${hardFdLimit()}), ${env('BENCH_LINK_HOSTS', '4')} double processes, load ${loadAverage()}`,
);
for (const backend of backends) {
  try {
    const m = await measureLinks({
      backend,
      links,
      hosts: Number(env('BENCH_LINK_HOSTS', '4')),
      restart: env('BENCH_LINK_RESTART', 'kill') as 'kill' | 'term',
      timeoutMs: Number(env('BENCH_TIMEOUT_MS', '60000')),
    });
    for (const line of describeLinks(m)) console.log(line);
  } catch (e) {
    console.log(`${backend.padEnd(8)} links failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}
