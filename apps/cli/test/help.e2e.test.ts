import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { runt } from './cli.js';

// `runt help`, `runt help <topic>` (@oclif/plugin-help) and shell completion
// (@oclif/plugin-autocomplete), as the built CLI answers them (issue 12).
describe('help and completion', () => {
  const home = mkdtempSync(join(tmpdir(), 'runt-help-'));
  const env = {
    HOME: home,
    XDG_CACHE_HOME: join(home, '.cache'),
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_DATA_HOME: join(home, '.local/share'),
  };

  it('runt help lists the topics; runt help run lists the run commands', async () => {
    const top = await runt(['help'], env);
    expect(top.exitCode, top.stderr).toBe(0);
    expect(top.stdout).toMatch(/^USAGE\n\s+\$ runt \[COMMAND\]/m);
    for (const topic of ['admin', 'run', 'workspace', 'workstation'])
      expect(top.stdout).toMatch(new RegExp(`^\\s+${topic}\\s+\\S`, 'm'));
    const run = await runt(['help', 'run'], env);
    expect(run.exitCode, run.stderr).toBe(0);
    for (const cmd of ['cancel', 'exec', 'list', 'logs', 'show', 'submit'])
      expect(run.stdout).toMatch(new RegExp(`^\\s+run ${cmd}\\s+\\S`, 'm'));
    const submit = await runt(['help', 'run', 'submit'], env);
    expect(submit.exitCode, submit.stderr).toBe(0);
    expect(submit.stdout).toContain('--runtime');
  });

  it("runt autocomplete sets up bash completion that completes runt's topics", async () => {
    const setup = await runt(['autocomplete', 'bash'], env);
    expect(setup.exitCode, setup.stderr).toBe(0);
    expect(setup.stdout).toContain('runt autocomplete script bash');
    const script = await runt(['autocomplete', 'script', 'bash'], env);
    expect(script.exitCode, script.stderr).toBe(0);
    // Source what the user would add to ~/.bashrc, then ask bash to complete `runt wo`.
    const r = await execa(
      'bash',
      [
        '-c',
        `${script.stdout}\nCOMP_WORDS=(runt wo); COMP_CWORD=1; COMP_LINE="runt wo"; COMP_POINT=7; fn=$(complete -p runt | sed -E 's/.*-F ([^ ]+).*/\\1/'); "$fn"; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      {
        env: { ...process.env, ...env },
        reject: false,
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.split('\n')).toEqual(
      expect.arrayContaining([expect.stringMatching(/^workstation/), expect.stringMatching(/^workspace/)]),
    );
  });
});
