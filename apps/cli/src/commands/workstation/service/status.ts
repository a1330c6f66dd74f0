import { existsSync } from 'node:fs';
import { Command } from '@oclif/core';
import { serviceTarget, serviceTargetFlags } from '../../../service-target.js';
import { systemctl } from '../../../systemd-unit.js';

export default class WorkstationServiceStatus extends Command {
  static override summary = "The agent service's state: not installed, or what systemd says of it.";
  static override description =
    'Exit 0 when the service is active, 3 when it is installed but not running (as systemctl status), 1 when it is not installed or systemd cannot be asked.';
  static override examples = [
    '<%= config.bin %> workstation service status',
    '<%= config.bin %> workstation service status --system',
  ];
  static override flags = { ...serviceTargetFlags };

  async run() {
    const { flags } = await this.parse(WorkstationServiceStatus);
    const target = serviceTarget(flags);
    const base = { unit: target.unit, path: target.path, scope: target.scope };
    if (!existsSync(target.path)) {
      this.log(`${target.unit}: not installed (no ${target.path})`);
      process.exitCode = 1;
      return { ...base, installed: false };
    }
    const r = systemctl(target.scope, [
      'show',
      target.unit,
      '--property=ActiveState,SubState,MainPID,NRestarts,ActiveEnterTimestamp',
    ]);
    if (!r.ok) {
      this.log(`${target.unit}: installed (${target.path}); cannot ask systemd (${r.reason})`);
      process.exitCode = 1;
      return { ...base, installed: true, active_state: null };
    }
    const p = Object.fromEntries(
      r.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const pid = Number(p.MainPID) || null;
    const state = {
      ...base,
      installed: true,
      active_state: p.ActiveState ?? null,
      sub_state: p.SubState ?? null,
      main_pid: pid,
      restarts: Number(p.NRestarts ?? 0),
      since: p.ActiveEnterTimestamp || null,
    };
    this.log(
      `${target.unit}: ${state.active_state} (${state.sub_state})${pid ? `, pid ${pid}` : ''}${state.since ? `, since ${state.since}` : ''}, ${state.restarts} restarts; unit ${target.path}`,
    );
    process.exitCode = state.active_state === 'active' ? 0 : 3;
    return state;
  }
}
