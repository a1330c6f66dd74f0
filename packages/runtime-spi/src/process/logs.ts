import { open, stat } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { sleep, throwIfAborted } from '../abort.js';
import type { LogChunk, LogStream } from '../runtime.js';
import type { InstanceFiles } from './state.js';

const STREAMS: LogStream[] = ['stdout', 'stderr'];
const POLL_MS = 50;

/**
 * Reads an instance's log files; with `follow`, keeps polling them until `isRunning()` says
 * the instance has ended, then reads what is left. Files carry no per-line time, so `at`
 * is the read time and `since` skips a whole file last written before it.
 */
export async function* readLogFiles(
  files: InstanceFiles,
  opts: {
    follow?: boolean;
    since?: number;
    signal?: AbortSignal;
    runtime: string;
    /** Settles when the instance exits (its starter's child exit event): the follow then ends without waiting a poll. */
    exited?: Promise<void>;
  },
  isRunning: () => Promise<boolean>,
): AsyncGenerator<LogChunk> {
  const offsets = new Map<LogStream, number>();
  const decoders = new Map<LogStream, StringDecoder>();
  for (const stream of STREAMS) {
    decoders.set(stream, new StringDecoder('utf8'));
    let start = 0;
    if (opts.since !== undefined) {
      const info = await stat(files.log(stream)).catch(() => undefined);
      if (info && info.mtimeMs < opts.since) start = info.size;
    }
    offsets.set(stream, start);
  }
  for (;;) {
    throwIfAborted(opts.signal, opts.runtime);
    const running = opts.follow ? await isRunning() : false;
    for (const stream of STREAMS) {
      const { data, bytes } = await readFrom(
        files.log(stream),
        offsets,
        stream,
        decoders.get(stream) as StringDecoder,
      );
      if (bytes.length > 0) yield { stream, data, bytes, at: new Date().toISOString() };
    }
    if (!running) return;
    if (opts.exited) await Promise.race([sleep(POLL_MS, opts.signal, opts.runtime), opts.exited]);
    else await sleep(POLL_MS, opts.signal, opts.runtime);
  }
}

async function readFrom(
  path: string,
  offsets: Map<LogStream, number>,
  stream: LogStream,
  decoder: StringDecoder,
): Promise<{ data: string; bytes: Buffer }> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return { data: '', bytes: Buffer.alloc(0) };
  try {
    let text = '';
    const read: Buffer[] = [];
    for (;;) {
      const buffer = Buffer.alloc(64 * 1024);
      const position = offsets.get(stream) ?? 0;
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return { data: text, bytes: Buffer.concat(read) };
      offsets.set(stream, position + bytesRead);
      read.push(buffer.subarray(0, bytesRead));
      text += decoder.write(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
}
