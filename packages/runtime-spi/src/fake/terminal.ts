import type { ExitStatus, TerminalSession } from '../runtime.js';
import { FakeProcess } from './shell.js';

export interface FakeTerminalOptions {
  env: Record<string, string>;
  cwd: string;
  prompt?: string;
}

/**
 * An interactive session on the fake shell: typed input is echoed back like a tty does,
 * each line runs through the fake shell (`\n` becomes `\r\n`), `exit N` or Ctrl-D ends it.
 */
export class FakeTerminal implements TerminalSession {
  readonly exit: Promise<ExitStatus>;
  cols: number;
  rows: number;
  #listeners = new Set<(data: string) => void>();
  #unread: string[] = [];
  #line = '';
  #lines: string[] = [];
  #running: FakeProcess | undefined;
  #resolveExit!: (status: ExitStatus) => void;
  #done = false;
  #options: FakeTerminalOptions;
  #env: Record<string, string>;

  constructor(options: FakeTerminalOptions & { cols?: number; rows?: number }) {
    this.#options = options;
    this.#env = { ...options.env };
    this.cols = options.cols ?? 80;
    this.rows = options.rows ?? 24;
    this.exit = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
    queueMicrotask(() => this.#emit(this.#prompt()));
  }

  #prompt(): string {
    return this.#options.prompt ?? '$ ';
  }

  #emit(data: string): void {
    if (this.#done) return;
    // Like a pty, output waits for its first reader instead of being lost.
    if (this.#listeners.size === 0) this.#unread.push(data);
    for (const listener of this.#listeners) listener(data);
  }

  onData(listener: (data: string) => void): () => void {
    this.#listeners.add(listener);
    const unread = this.#unread.splice(0);
    for (const data of unread) listener(data);
    return () => this.#listeners.delete(listener);
  }

  resize(cols: number, rows: number): void {
    this.cols = cols;
    this.rows = rows;
  }

  write(data: string): void {
    if (this.#done) return;
    for (const c of data) {
      if (c === '\r' || c === '\n') {
        this.#emit('\r\n');
        this.#lines.push(this.#line);
        this.#line = '';
      } else if (c === '\x7f' || c === '\b') {
        if (this.#line.length > 0) {
          this.#line = this.#line.slice(0, -1);
          this.#emit('\b \b');
        }
      } else if (c === '\x03') {
        this.#running?.kill('SIGINT');
        this.#line = '';
        this.#emit('^C\r\n');
      } else if (c === '\x04' && this.#line === '' && !this.#running) {
        this.#finish({ exitCode: 0 });
        return;
      } else {
        this.#line += c;
        this.#emit(c);
      }
    }
    void this.#drain();
  }

  async #drain(): Promise<void> {
    if (this.#running) return;
    while (this.#lines.length > 0 && !this.#done) {
      const line = this.#lines.shift() as string;
      // `exit` ends the session itself; everything else runs as a one-line script.
      const exit = /^\s*exit(?:\s+(\d+))?\s*$/.exec(line);
      if (exit) {
        this.#finish({ exitCode: Number(exit[1] ?? 0) & 255 });
        return;
      }
      const proc = new FakeProcess(['/bin/sh', '-c', line], {
        env: this.#env,
        cwd: this.#options.cwd,
        write: (_stream, data) => this.#emit(data.replace(/\r?\n/g, '\r\n')),
      });
      this.#running = proc;
      await proc.exit;
      this.#running = undefined;
      this.#emit(this.#prompt());
    }
  }

  #finish(status: ExitStatus): void {
    if (this.#done) return;
    this.#done = true;
    this.#running?.kill('SIGKILL');
    this.#listeners.clear();
    this.#resolveExit(status);
  }

  close(): void {
    this.#finish({ exitCode: 129, signal: 'SIGHUP' });
  }
}
