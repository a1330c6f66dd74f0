#!/usr/bin/env node
// Checks that the package in the current directory is publishable on its own and that no
// focused or skipped test hides a failure. Run by `pnpm lint` (turbo) in every package.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const problems = [];
const need = (ok, msg) => ok || problems.push(msg);

need(pkg.exports && Object.keys(pkg.exports).length > 0, 'package.json has no "exports"');
need(Array.isArray(pkg.files) && pkg.files.includes('dist'), 'package.json "files" must include dist');
need(pkg.engines?.node, 'package.json has no engines.node');
need(pkg.license, 'package.json has no license');
for (const [sub, target] of Object.entries(pkg.exports ?? {})) {
  need(
    typeof target === 'object' && target.types && target.import,
    `export "${sub}" needs "types" and "import"`,
  );
}
for (const [name, range] of Object.entries({ ...pkg.dependencies, ...pkg.peerDependencies })) {
  if (name.startsWith('@runt/') && pkg.dependencies?.[name])
    need(range === 'workspace:^', `${name} must be "workspace:^" between libraries`);
}
const readme = existsSync('README.md') ? readFileSync('README.md', 'utf8') : '';
need(readme.length > 0, 'README.md is missing');
need(/```(ts|js|sh|bash)/.test(readme), 'README.md has no runnable example (a ```ts or ```sh block)');

const walk = (dir) =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (f === 'node_modules' || f === 'dist') return [];
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
for (const dir of ['src', 'test']) {
  if (!existsSync(dir)) continue;
  for (const f of walk(dir).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(f, 'utf8');
    if (/\b(it|test|describe)\.(only|skip)\(/.test(text)) problems.push(`${f}: focused or skipped test`);
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(`${pkg.name}: ${p}`);
  process.exit(1);
}
console.log(`${pkg.name}: ok`);
