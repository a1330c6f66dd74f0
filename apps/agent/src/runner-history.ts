import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Runner ids kept: an older predecessor's leases ran out long ago. */
const KEEP = 20;

/**
 * Records this agent's runner id in the state dir's runner history (`<state dir>/agent/runners`,
 * one id a line, oldest first, 0600) and returns the ids recorded before it: the runners of
 * earlier agents on this state dir. An agent holds `agent.lock` on its state dir, so those
 * agents are dead, and a lease the control plane still gives one of them is a run nobody will
 * start unless this agent does something about it (`releaseOrphans`). Durable (written to a
 * temporary file, synced, renamed, directory synced) before the agent claims anything under
 * the new id, so no claim can be made for a runner the history does not name.
 *
 * @example
 * const predecessors = await recordRunner('/var/lib/runt/agent/runners', 'ws_1/3f2a…');
 */
export async function recordRunner(file: string, runnerId: string): Promise<string[]> {
  let before: string[] = [];
  try {
    before = (await readFile(file, 'utf8')).split('\n').filter((line) => line.length > 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${[...before, runnerId].slice(-KEEP).join('\n')}\n`, 'utf8');
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  const dir = await open(dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return before;
}
