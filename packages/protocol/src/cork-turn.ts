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
