import { describe, expect, it } from 'vitest';
import { describeRuntimeConformance } from '../conformance/index.js';
import { RuntimeError, isRuntimeError } from '../errors.js';
import { FakeEngine, createFakeRuntime } from './index.js';

const MISSING = 'runt-test/does-not-exist:0';
const engine = new FakeEngine();

describeRuntimeConformance({
  name: 'fake',
  createRuntime: () => createFakeRuntime({ engine, images: (ref) => ref !== MISSING }),
  image: 'busybox:fake',
  missingImage: MISSING,
});
