import { execFile } from 'node:child_process';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';

/** How a child node process builds the adapter. */
export interface ReattachInNewProcess {
  /** Module specifier (resolved from the test's working directory) or absolute path of an ESM file. */
  module: string;
  /** Named export of a factory: `exportName(options)` returns a Runtime (or a promise of one). */
  exportName: string;
  /** JSON-serialisable options for the factory. */
  options?: unknown;
}

// Runs inside the child. It gets everything through argv as JSON, so no quoting is needed.
const CHILD_SCRIPT = `
const [moduleUrl, exportName, optionsJson, action, payloadJson] = process.argv.slice(1);
const mod = await import(moduleUrl);
const factory = mod[exportName];
if (typeof factory !== 'function') throw new Error('export "' + exportName + '" of ' + moduleUrl + ' is not a function');
const runtime = await factory(JSON.parse(optionsJson));
const payload = JSON.parse(payloadJson);
let result;
if (action === 'create-start') {
  const created = await runtime.create(payload.spec);
  const started = await runtime.start(created.id);
  result = { id: created.id, state: started.state };
} else if (action === 'observe') {
  const listed = await runtime.list({ labels: payload.labels });
  const inspected = await runtime.inspect(payload.id);
  const exit = await runtime.wait(payload.id);
  let stdout = '';
  for await (const chunk of runtime.logs(payload.id)) if (chunk.stream === 'stdout') stdout += chunk.data;
  result = { listed: listed.map((i) => i.id), inspected, exit, stdout };
} else {
  throw new Error('unknown action ' + action);
}
await runtime.close();
process.stdout.write(JSON.stringify(result));
process.exit(0);
`;

/** Runs one action against the adapter in a brand-new node process and returns its JSON result. */
export function runInChildProcess<T>(
  how: ReattachInNewProcess,
  action: 'create-start' | 'observe',
  payload: unknown,
  timeoutMs: number,
): Promise<T> {
  const moduleUrl = isAbsolute(how.module) ? pathToFileURL(how.module).href : how.module;
  const args = [
    '--input-type=module',
    '-e',
    CHILD_SCRIPT,
    '--',
    moduleUrl,
    how.exportName,
    JSON.stringify(how.options ?? {}),
    action,
    JSON.stringify(payload),
  ];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      args,
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`child process (${action}) failed: ${error.message}\n${stderr}`));
        try {
          resolve(JSON.parse(stdout) as T);
        } catch {
          reject(new Error(`child process (${action}) printed no JSON: ${stdout}\n${stderr}`));
        }
      },
    );
  });
}
