import type { ExitStatus, LogStream } from '../runtime.js';

/**
 * The fake runtime's tiny shell. It understands exactly the vocabulary the conformance suite
 * uses (documented in the README), so the same `['/bin/sh', '-c', script]` workloads run on
 * a host, in a busybox image and in memory. It is not a shell: no pipes, no conditionals,
 * no loops, no globbing.
 */

type Part = { text: string; expand: boolean };
type Word = Part[];
interface Statement {
  words: Word[];
  toStderr: boolean;
  background: boolean;
}

export class ShellSyntaxError extends Error {
  override readonly name = 'ShellSyntaxError';
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** Splits a script into statements (`;`, newlines and `&` end one; `&` runs it in the background). */
export function parseScript(script: string): Statement[] {
  const statements: Statement[] = [];
  let words: Word[] = [];
  let word: Word | undefined;
  let toStderr = false;
  const part = (text: string, expand: boolean) => {
    word ??= [];
    word.push({ text, expand });
  };
  const endWord = () => {
    if (word) words.push(word);
    word = undefined;
  };
  const endStatement = (background: boolean) => {
    endWord();
    if (words.length > 0) statements.push({ words, toStderr, background });
    words = [];
    toStderr = false;
  };
  let i = 0;
  while (i < script.length) {
    const c = script[i] as string;
    if (c === "'") {
      const end = script.indexOf("'", i + 1);
      if (end < 0) throw new ShellSyntaxError('unterminated single quote');
      part(script.slice(i + 1, end), false);
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      let text = '';
      while (j < script.length && script[j] !== '"') {
        if (script[j] === '\\' && j + 1 < script.length && '"\\$`'.includes(script[j + 1] as string)) {
          if (script[j + 1] === '$') {
            part(text, true);
            part('$', false);
            text = '';
          } else text += script[j + 1];
          j += 2;
        } else text += script[j++];
      }
      if (j >= script.length) throw new ShellSyntaxError('unterminated double quote');
      part(text, true);
      i = j + 1;
    } else if (c === '\\' && i + 1 < script.length) {
      part(script[i + 1] as string, false);
      i += 2;
    } else if (c === ' ' || c === '\t') {
      endWord();
      i++;
    } else if (c === ';' || c === '\n') {
      endStatement(false);
      i++;
    } else if (c === '&') {
      if (script[i + 1] === '&') throw new ShellSyntaxError('&& is not supported by the fake shell');
      endStatement(true);
      i++;
    } else if (c === '#' && !word) {
      while (i < script.length && script[i] !== '\n') i++;
    } else if (script.startsWith('>&2', i) || script.startsWith('1>&2', i)) {
      endWord();
      toStderr = true;
      i += script.startsWith('>&2', i) ? 3 : 4;
    } else if (c === '|' || c === '<' || c === '>' || c === '(' || c === ')' || c === '`') {
      throw new ShellSyntaxError(`"${c}" is not supported by the fake shell`);
    } else {
      let j = i;
      while (j < script.length && !` \t;\n&'"\\|<>()\`#`.includes(script[j] as string)) {
        if (script.startsWith('>&2', j) || script.startsWith('1>&2', j)) break;
        j++;
      }
      part(script.slice(i, j), true);
      i = j;
    }
  }
  endStatement(false);
  return statements;
}

/**
 * Parsed scripts by their text: a load test runs the same few scripts thousands of times
 * (issue 9: the parse was a share of each fake run). The statements are only read. Bounded:
 * emptied when full.
 */
const parsedScripts = new Map<string, Statement[]>();
const PARSED_SCRIPTS_MAX = 256;

function parsedScript(script: string): Statement[] {
  let statements = parsedScripts.get(script);
  if (!statements) {
    statements = parseScript(script);
    if (parsedScripts.size >= PARSED_SCRIPTS_MAX) parsedScripts.clear();
    parsedScripts.set(script, statements);
  }
  return statements;
}

/** Thrown to unwind the fake shell on `exit` (or a kill); caught where the script ends. */
class Exit extends Error {
  constructor(readonly status: ExitStatus) {
    super(`exit ${status.exitCode}`);
  }
}

export interface FakeProcessOptions {
  env: Record<string, string>;
  cwd: string;
  stdin?: string;
  write(stream: LogStream, data: string): void;
}

/**
 * One running program in the fake: argv interpreted by the tiny shell, with POSIX-like
 * signals (`kill('SIGTERM')` honours `trap`; `SIGKILL` always ends it with 137).
 */
export class FakeProcess {
  readonly exit: Promise<ExitStatus>;
  #options: FakeProcessOptions;
  #env: Record<string, string>;
  #cwd: string;
  #stdin: string | undefined;
  // The collections below are made when first needed: most fake workloads (`echo hi`) set no
  // trap, block on nothing and start no job (issue 9: a Map and two Sets fewer per run).
  #traps: Map<string, string> | undefined;
  #pending: string[] = [];
  #wakers: Set<() => void> | undefined;
  #ended = false;
  #killed: ((exit: Exit) => void) | undefined;
  #killedPromise: Promise<never>;
  #jobs: Set<Promise<unknown>> | undefined;
  #status = 0;
  #inTrap = false;

  constructor(argv: string[], options: FakeProcessOptions) {
    this.#options = options;
    this.#env = { ...options.env };
    this.#cwd = options.cwd;
    this.#stdin = options.stdin;
    this.#killedPromise = new Promise<never>((_, reject) => {
      this.#killed = reject;
    });
    this.#killedPromise.catch(() => {});
    this.exit = this.#main(argv);
  }

  /** Delivers a signal: SIGKILL ends at once; others run their trap, are ignored, or end with 128+n. */
  kill(signal: string): void {
    const name = signal.startsWith('SIG') ? signal : `SIG${signal}`;
    if (name === 'SIGKILL') {
      this.#killed?.(new Exit({ exitCode: 137, signal: 'SIGKILL' }));
      return;
    }
    const trap = this.#traps?.get(name);
    if (trap === '') return;
    if (trap === undefined) {
      this.#killed?.(new Exit({ exitCode: 128 + (SIGNAL_NUMBERS[name] ?? 15), signal: name }));
      return;
    }
    this.#pending.push(name);
    this.#wakeAll();
  }

  async #main(argv: string[]): Promise<ExitStatus> {
    try {
      const status = await Promise.race([this.#command(argv, 'stdout'), this.#killedPromise]);
      return { exitCode: status };
    } catch (error) {
      if (error instanceof Exit) return error.status;
      if (error instanceof ShellSyntaxError) {
        this.#options.write('stderr', `sh: ${error.message}\n`);
        return { exitCode: 2 };
      }
      throw error;
    } finally {
      this.#killed = undefined;
      this.#ended = true;
      this.#wakeAll();
    }
  }

  #wakeAll(): void {
    if (this.#wakers) for (const wake of [...this.#wakers]) wake();
  }

  async #runScript(script: string): Promise<number> {
    for (const statement of parsedScript(script)) {
      if (statement.background) {
        const job = this.#runStatement(statement).catch(() => {});
        const jobs = (this.#jobs ??= new Set());
        jobs.add(job);
        void job.finally(() => jobs.delete(job));
        this.#status = 0;
      } else {
        this.#status = await this.#runStatement(statement);
      }
      await this.#handlePending();
    }
    return this.#status;
  }

  async #handlePending(): Promise<void> {
    if (this.#inTrap) return;
    while (this.#pending.length > 0) {
      const signal = this.#pending.shift() as string;
      const trap = this.#traps?.get(signal);
      if (!trap) continue;
      const saved = this.#status;
      this.#inTrap = true;
      try {
        await this.#runScript(trap);
      } finally {
        this.#inTrap = false;
      }
      this.#status = saved;
    }
  }

  #expand(word: Word): string {
    // A word of one part with nothing to expand is its text (most words: no array, no regex).
    if (word.length === 1 && !(word[0]!.expand && word[0]!.text.includes('$'))) return word[0]!.text;
    return word
      .map((p) =>
        p.expand
          ? p.text.replace(
              /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\?))/g,
              (_, braced?: string, plain?: string, status?: string) =>
                status ? String(this.#status) : this.#variable((braced ?? plain) as string),
            )
          : p.text,
      )
      .join('');
  }

  #variable(name: string): string {
    if (name === 'PWD') return this.#cwd;
    return this.#env[name] ?? '';
  }

  #runStatement(statement: Statement): Promise<number> {
    return this.#command(
      statement.words.map((w) => this.#expand(w)),
      statement.toStderr ? 'stderr' : 'stdout',
    );
  }

  /** Blocks for `ms`, waking early when a trapped signal arrives (so the trap runs promptly) or the process ends. */
  async #block(ms: number, until?: Promise<unknown>): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      const wakers = (this.#wakers ??= new Set());
      function done() {
        clearTimeout(timer);
        wakers.delete(done);
        resolve();
      }
      wakers.add(done);
      void until?.then(done);
      if ((this.#pending.length > 0 && !this.#inTrap) || this.#ended) done();
    });
  }

  async #command(argv: string[], stream: LogStream): Promise<number> {
    const [program, ...args] = argv;
    if (this.#ended) throw new Exit({ exitCode: 137, signal: 'SIGKILL' });
    if (program === undefined) return 0;
    const name = program.slice(program.lastIndexOf('/') + 1);
    const out = (data: string) => this.#options.write(stream, data);
    switch (name) {
      case 'sh':
        if (args[0] !== '-c' || args[1] === undefined) {
          this.#options.write('stderr', 'sh: the fake shell only runs "sh -c SCRIPT"\n');
          return 2;
        }
        return this.#runScript(args[1]);
      case 'echo': {
        const newline = args[0] !== '-n';
        out(`${(newline ? args : args.slice(1)).join(' ')}${newline ? '\n' : ''}`);
        return 0;
      }
      case 'true':
      case ':':
        return 0;
      case 'false':
        return 1;
      case 'exit': {
        const code = args[0] === undefined ? this.#status : Number.parseInt(args[0], 10);
        throw new Exit({ exitCode: Number.isNaN(code) ? 2 : code & 255 });
      }
      case 'sleep': {
        const seconds = args[0] === 'infinity' ? Number.POSITIVE_INFINITY : Number(args[0]);
        if (Number.isNaN(seconds)) {
          this.#options.write('stderr', `sleep: invalid number '${args[0] ?? ''}'\n`);
          return 1;
        }
        const until = Date.now() + seconds * 1000;
        while (Date.now() < until && !this.#ended) {
          await this.#block(until - Date.now());
          if (this.#pending.length > 0 && !this.#inTrap) return 128 + 15;
        }
        return 0;
      }
      case 'wait':
        while (this.#jobs && this.#jobs.size > 0 && !this.#ended) {
          await this.#block(Number.POSITIVE_INFINITY, Promise.all(this.#jobs));
          if (this.#pending.length > 0 && !this.#inTrap) return 128 + 15;
        }
        return 0;
      case 'cat':
        if (this.#stdin !== undefined) out(this.#stdin);
        this.#stdin = undefined;
        return 0;
      case 'env':
        out(
          Object.entries({ ...this.#env, PWD: this.#cwd })
            .map(([k, v]) => `${k}=${v}\n`)
            .join(''),
        );
        return 0;
      case 'pwd':
        out(`${this.#cwd}\n`);
        return 0;
      case 'cd':
        this.#cwd = args[0] ?? this.#env.HOME ?? '/';
        return 0;
      case 'export':
        for (const assignment of args) {
          const eq = assignment.indexOf('=');
          if (eq > 0) this.#env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
        }
        return 0;
      case 'trap': {
        const [action, ...signals] = args;
        for (const s of signals) {
          const sig = s.startsWith('SIG') ? s : `SIG${s}`;
          if (action === '-') this.#traps?.delete(sig);
          else (this.#traps ??= new Map()).set(sig, action ?? '');
        }
        return 0;
      }
      default:
        this.#options.write('stderr', `sh: ${program}: not found\n`);
        return 127;
    }
  }
}
