import type { ControlPlaneClient, Workstation } from '@runt/protocol';
import { CliError } from './errors.js';

/**
 * A workstation as a user names it on the command line: its id, or a name (display name) that
 * names exactly one workstation, as `docker` and `nomad` take a name or an id. The one home of
 * that rule for `run list --workstation`, `run submit --workstation` and `admin drain|undrain`.
 *
 * @example
 * workstationIdOf(fleet, 'build-box'); // 'ws_0b6c…'
 */
export function workstationIdOf(fleet: Workstation[], given: string, what = '--workstation'): string {
  if (fleet.some((w) => w.id === given)) return given;
  const named = fleet.filter((w) => w.display_name === given);
  if (named.length === 1) return named[0]!.id;
  if (named.length > 1)
    throw new CliError(
      `${what} ${given} names ${named.length} workstations (${named.map((w) => w.id).join(', ')}): pass an id`,
    );
  throw new CliError(`no workstation named or with id ${given} (runt workstation status lists them)`);
}

/** The fleet as the operator sees it (one request). */
export async function fleetOf(client: ControlPlaneClient): Promise<Workstation[]> {
  return (await client.listWorkstations()).workstations;
}

/**
 * {@link workstationIdOf} against the control plane's fleet, for commands that send the id on:
 * an id-shaped value (`ws_…`) that names nothing is passed through, so the control plane answers
 * for it as before names were accepted ("no such workstation").
 */
export async function resolveWorkstationId(
  client: ControlPlaneClient,
  given: string,
  what?: string,
): Promise<string> {
  const fleet = await fleetOf(client);
  if (given.startsWith('ws_') && !fleet.some((w) => w.display_name === given)) return given;
  return workstationIdOf(fleet, given, what);
}

/**
 * A workstation id as a person reads it: `name (id)` when the fleet knows it, the id otherwise.
 *
 * @example
 * workstationLabel(fleet, 'ws_0b6c…'); // 'build-box (ws_0b6c…)'
 */
export function workstationLabel(fleet: Workstation[], id: string): string {
  const name = fleet.find((w) => w.id === id)?.display_name;
  return name ? `${name} (${id})` : id;
}
