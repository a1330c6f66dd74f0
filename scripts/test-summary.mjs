#!/usr/bin/env node
// Adds up the vitest JSON reports that `pnpm test -- --reporter=json --outputFile=…` left in
// each package and prints one closing line: "tests: N passed, N failed", preceded by one line per
// failed test (package, file, name, the first line of its message) so a CI log's tail says which.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

let passed = 0;
let failed = 0;
let skipped = 0;
const packageDirs = ['packages', 'apps'].flatMap((root) =>
  existsSync(root) ? readdirSync(root).map((dir) => join(root, dir)) : [],
);
packageDirs.push('bench', 'deploy'); // the workspace packages at the root
for (const dir of packageDirs) {
  const file = join(dir, '.vitest-report.json');
  if (!existsSync(file)) continue;
  const r = JSON.parse(readFileSync(file, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += (r.numFailedTests ?? 0) + (r.numRuntimeErrorTests ?? 0);
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  for (const file of r.testResults ?? []) {
    const where = `${dir}/${String(file.name ?? '')
      .split(`/${dir}/`)
      .pop()}`;
    const failedTests = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    for (const t of failedTests) {
      const why = String(t.failureMessages?.[0] ?? '')
        .split('\n')[0]
        .slice(0, 300);
      console.log(`FAILED ${where} > ${t.fullName ?? t.title}: ${why}`);
    }
    if (!failedTests.length && file.status === 'failed') {
      console.log(
        `FAILED ${where}: ${String(file.message ?? '')
          .split('\n')[0]
          .slice(0, 300)}`,
      );
    }
  }
}
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
