#!/usr/bin/env node
// Adds up the vitest JSON reports that `pnpm test -- --reporter=json --outputFile=…` left in
// each package and prints one closing line: "tests: N passed, N failed".
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

let passed = 0;
let failed = 0;
let skipped = 0;
const packageDirs = ['packages', 'apps'].flatMap((root) =>
  existsSync(root) ? readdirSync(root).map((dir) => join(root, dir)) : [],
);
packageDirs.push('bench'); // the bench-only workspace package at the root
for (const dir of packageDirs) {
  const file = join(dir, '.vitest-report.json');
  if (!existsSync(file)) continue;
  const r = JSON.parse(readFileSync(file, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += (r.numFailedTests ?? 0) + (r.numRuntimeErrorTests ?? 0);
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
}
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
