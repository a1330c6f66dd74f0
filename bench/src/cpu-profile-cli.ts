// `node dist/cpu-profile-top.js <file> [n]`: a profile's top functions by self time;
// `--slices <seconds>`: its timeline (busy time, GC and top functions per slice), e.g. an agent's
// first seconds against its later ones.
import { cpuProfileSlices, cpuProfileTop } from './cpu-profile-top.js';

const [file, ...rest] = process.argv.slice(2);
if (!file) {
  console.error('usage: node dist/cpu-profile-top.js <file.cpuprofile> [n] [--slices <seconds>]');
  process.exit(2);
}
const at = rest.indexOf('--slices');
if (at >= 0) {
  for (const s of cpuProfileSlices(file, Number(rest[at + 1] ?? 1)))
    console.log(
      `${s.from.toFixed(1).padStart(7)} s  busy ${s.busyMs.toFixed(0).padStart(5)} ms  gc ${s.gcPercent.toFixed(1).padStart(4)} %  program ${s.programPercent.toFixed(1).padStart(4)} %  ` +
        s.top.map((e) => `${e.selfPercent.toFixed(1)} % ${e.name} ${e.where}`).join(' | '),
    );
} else {
  for (const e of cpuProfileTop(file, Number(rest[0] ?? 15)))
    console.log(`${e.selfPercent.toFixed(1).padStart(5)} %  ${e.name}  ${e.where}`);
}
