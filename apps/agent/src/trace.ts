import { traceWriter } from '@runt/protocol/trace';

/**
 * The agent's side of the control plane's per-step trace (`apps/control-plane/src/trace.ts`),
 * for latency work only (issue 9, the drain's cycle): with `RUNT_TRACE_FILE` set, `traceMark(step,
 * key)` appends `t step key` lines to `<RUNT_TRACE_FILE>.agent-<pid>` (one file per agent: the
 * control plane writes the named one); see `traceWriter`. Without it every call returns at once.
 *
 * @example
 * if (tracing) traceMark('agent.exited', runId);
 */
const base = process.env.RUNT_TRACE_FILE;
export const { tracing, mark: traceMark } = traceWriter(base ? `${base}.agent-${process.pid}` : undefined);
