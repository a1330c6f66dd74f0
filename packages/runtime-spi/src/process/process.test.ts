import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeRuntimeConformance } from '../conformance/index.js';
import { createProcessRuntime } from './index.js';

const stateDir = mkdtempSync(join(tmpdir(), 'runt-process-conformance-'));
const builtModule = fileURLToPath(new URL('../../dist/process/index.js', import.meta.url));

describeRuntimeConformance({
  name: 'process',
  createRuntime: () => createProcessRuntime({ stateDir }),
  reattachInNewProcess: { module: builtModule, exportName: 'createProcessRuntime', options: { stateDir } },
});
