import { describe, expect, it } from 'vitest';
import { submitRunRequestSchema } from './runs.js';

const issues = (body: unknown) => {
  const r = submitRunRequestSchema.safeParse(body);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('submitRunRequestSchema', () => {
  it('refuses a process run without a command (it would idle forever holding a slot)', () => {
    expect(issues({ runtime: 'process' })).toEqual([
      'command: a run on the process runtime needs a command (e.g. ["sh", "-c", "make test"])',
    ]);
    expect(issues({ runtime: 'process', command: ['true'] })).toEqual([]);
  });

  it('refuses a container run without an image', () => {
    expect(issues({ runtime: 'docker', command: ['true'] })).toEqual([
      'image: a run on the docker runtime needs an image',
    ]);
    expect(issues({ runtime: 'podman' })).toEqual(['image: a run on the podman runtime needs an image']);
    expect(issues({ runtime: 'docker', image: 'busybox' })).toEqual([]);
  });

  it('leaves other runtimes to their agents (fake, third-party adapters)', () => {
    expect(issues({ runtime: 'fake' })).toEqual([]);
  });
});
