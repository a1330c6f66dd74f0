import { StringDecoder } from 'node:string_decoder';
import type { LogStream } from '../runtime.js';

const HEADER = 8;

/**
 * Splits Docker's multiplexed attach/log stream (8-byte frames: stream byte, 3 zero bytes, a
 * big-endian 32-bit length, then the payload) into text per stream. UTF-8 sequences cut across
 * frames are kept whole. Frames with an unknown stream byte mean the stream is raw (a TTY), and
 * everything from there on is reported as stdout.
 * @example
 * const demux = new DockerDemuxer((stream, text) => console.log(stream, text));
 * socket.on('data', (b) => demux.push(b));
 */
export class DockerDemuxer {
  #pending: Buffer = Buffer.alloc(0);
  #raw = false;
  #decoders: Record<LogStream, StringDecoder> = {
    stdout: new StringDecoder('utf8'),
    stderr: new StringDecoder('utf8'),
  };

  constructor(private readonly emit: (stream: LogStream, text: string) => void) {}

  push(chunk: Buffer): void {
    if (this.#raw) return this.#out('stdout', chunk);
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    while (this.#pending.length >= HEADER) {
      const kind = this.#pending[0];
      if (kind !== 0 && kind !== 1 && kind !== 2) {
        this.#raw = true;
        const rest = this.#pending;
        this.#pending = Buffer.alloc(0);
        return this.#out('stdout', rest);
      }
      const size = this.#pending.readUInt32BE(4);
      if (this.#pending.length < HEADER + size) return;
      const payload = this.#pending.subarray(HEADER, HEADER + size);
      this.#pending = this.#pending.subarray(HEADER + size);
      this.#out(kind === 2 ? 'stderr' : 'stdout', payload);
    }
  }

  /** Flushes bytes still held by the decoders (a truncated last character). */
  end(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const text = this.#decoders[stream].end();
      if (text) this.emit(stream, text);
    }
  }

  #out(stream: LogStream, bytes: Buffer): void {
    const text = this.#decoders[stream].write(bytes);
    if (text) this.emit(stream, text);
  }
}
