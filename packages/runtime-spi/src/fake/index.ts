export {
  createFakeRuntime,
  type FakeRuntime,
  type FakeRuntimeOptions,
  type FakeMethod,
  type FakeCall,
  type FakeFailure,
} from './runtime.js';
export { FakeEngine, type FakeInstanceRecord } from './engine.js';
export { FakeProcess, parseScript, ShellSyntaxError, type FakeProcessOptions } from './shell.js';
export { FakeTerminal, type FakeTerminalOptions } from './terminal.js';
