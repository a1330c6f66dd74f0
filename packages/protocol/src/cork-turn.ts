/** A stream that can hold its writes back (`net.Socket`, any `Writable`). */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

const corked = new WeakSet<Corkable>();

/**
 * Holds `stream`'s writes back until the end of the current turn of the event loop
 * (`process.nextTick`), so every write made in it — e.g. the link frames answering a whole
 * group-committed batch, which all resolve in one microtask run — leaves in ONE `writev`
 * instead of a syscall each. Call it before writing; calls in the same turn share the cork.
 * Nothing is delayed past the turn it was written in.
 *
 * @example
 * corkForTurn(rawSocket);
 * ws.send(a); ws.send(b); // one writev, after the current turn
 */
export function corkForTurn(stream: Corkable): void {
  if (corked.has(stream)) return;
  corked.add(stream);
  stream.cork();
  process.nextTick(() => {
    corked.delete(stream);
    stream.uncork();
  });
}

/** Streams corked until the end of this iteration of the event loop ({@link corkForIteration}). */
let corkedForIteration: Corkable[] = [];
const inIteration = new WeakSet<Corkable>();
const uncorkIteration = () => {
  const streams = corkedForIteration;
  corkedForIteration = [];
  for (const stream of streams) {
    inIteration.delete(stream);
    stream.uncork();
  }
};

/**
 * Holds `stream`'s writes back until the check phase of the current iteration of the event loop
 * (`setImmediate`), longer than {@link corkForTurn}: the writes made by everything that
 * iteration's I/O completed — on the control plane, the answers of a start batch and of a finish
 * batch whose statements came back together, an offer pass's offers — leave in ONE `writev`. A
 * turn (`process.nextTick`) ends at each I/O callback, so each batch's answers took a write of
 * their own. One `setImmediate` uncorks every stream corked in the iteration. Calls in the same
 * iteration share the cork.
 *
 * @example
 * corkForIteration(rawSocket);
 * ws.send(a); // … later I/O callbacks of the same iteration …
 * ws.send(b); // a and b: one writev, in the iteration's check phase
 */
export function corkForIteration(stream: Corkable): void {
  if (inIteration.has(stream)) return;
  inIteration.add(stream);
  if (corkedForIteration.length === 0) setImmediate(uncorkIteration);
  corkedForIteration.push(stream);
  stream.cork();
}
