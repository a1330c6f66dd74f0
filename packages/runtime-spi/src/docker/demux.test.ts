import { describe, expect, it } from 'vitest';
import { DockerDemuxer } from './demux.js';

const frame = (kind: number, text: string | Buffer) => {
  const payload = typeof text === 'string' ? Buffer.from(text) : text;
  const header = Buffer.alloc(8);
  header[0] = kind;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
};

const collect = (chunks: Buffer[]) => {
  const out: Array<[string, string]> = [];
  const demux = new DockerDemuxer((stream, text) => out.push([stream, text]));
  for (const c of chunks) demux.push(c);
  demux.end();
  const joined = (s: string) =>
    out
      .filter(([k]) => k === s)
      .map(([, t]) => t)
      .join('');
  return { out, stdout: joined('stdout'), stderr: joined('stderr') };
};

describe('DockerDemuxer', () => {
  it('splits frames by stream', () => {
    const { stdout, stderr } = collect([
      Buffer.concat([frame(1, 'out1\n'), frame(2, 'err\n'), frame(1, 'out2\n')]),
    ]);
    expect(stdout).toBe('out1\nout2\n');
    expect(stderr).toBe('err\n');
  });

  it('reassembles frames and UTF-8 characters cut at any byte', () => {
    const text = 'héllo → wörld ✓\n';
    const bytes = Buffer.concat([
      frame(1, Buffer.from(text).subarray(0, 3)),
      frame(1, Buffer.from(text).subarray(3)),
      frame(2, 'é'),
    ]);
    for (let cut = 1; cut < bytes.length; cut++) {
      const { stdout, stderr } = collect([bytes.subarray(0, cut), bytes.subarray(cut)]);
      expect(stdout).toBe(text);
      expect(stderr).toBe('é');
    }
  });

  it('treats a stream without frame headers (a TTY) as raw stdout', () => {
    const { stdout, stderr } = collect([Buffer.from('plain tty output\r\n')]);
    expect(stdout).toBe('plain tty output\r\n');
    expect(stderr).toBe('');
  });
});
