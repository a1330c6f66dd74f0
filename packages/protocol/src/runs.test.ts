import { describe, expect, it } from 'vitest';
import {
  reportRunStatusBriefResponseSchema,
  reportRunStatusRequestSchema,
  submitRunRequestSchema,
} from './runs.js';

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

describe("status reports with `answer: 'brief'`", () => {
  it('reads a brief answer, and a whole-run answer of an older control plane without parsing its run', () => {
    expect(reportRunStatusBriefResponseSchema.parse({ status: 'completed', next_event_seq: 4 })).toEqual({
      status: 'completed',
      next_event_seq: 4,
    });
    // An older control plane ignores `answer` and sends the run: it is neither checked nor kept.
    expect(
      reportRunStatusBriefResponseSchema.parse({ run: { id: 'run_1', not: 'a run' }, next_event_seq: 4 }),
    ).toEqual({ next_event_seq: 4 });
  });

  it("is an optional field of the request that older agents do not send; anything but 'run' or 'brief' is refused", () => {
    const base = { fencing_token: 3, status: 'running' };
    expect(reportRunStatusRequestSchema.parse(base)).toEqual(base);
    expect(reportRunStatusRequestSchema.parse({ ...base, answer: 'brief' }).answer).toBe('brief');
    expect(reportRunStatusRequestSchema.safeParse({ ...base, answer: 'all' }).success).toBe(false);
  });
});
