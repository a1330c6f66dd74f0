import type { Database, Listener } from '@runt/sql';

/** What a subscriber of one channel is told. */
export interface ChannelHandlers {
  /** A `pg_notify(channel, payload)` committed by any replica (this one too). */
  message(payload: string): void;
  /** The LISTEN is up; anything learnt before may have missed a notification. */
  up(): void;
  /** The LISTEN connection dropped: notifications are lost until the next `up`. */
  down(err: Error | undefined): void;
}

export interface NotificationBusOptions {
  /** Wait before listening again after a failure (default 1 s). */
  relistenMs?: number;
  /** Told when a LISTEN failed (`lost: false`) or its connection dropped (`lost: true`). */
  onListenError?: (channel: string, err: Error | undefined, lost: boolean) => void;
}

interface Channel {
  handlers: ChannelHandlers[];
  listener?: Listener;
  retry?: NodeJS.Timeout;
}

/**
 * Notifications between control-plane replicas over `Database.listen` (Postgres `LISTEN` /
 * `NOTIFY`), one dedicated connection per channel, re-established after it drops. Subscribers
 * get every message plus `up`/`down`, so a cache can stop trusting itself while a connection is
 * down. On PGlite (one process, no `listen`) nothing is delivered and `start` does nothing:
 * there is no other replica to hear from.
 *
 * @example
 * const bus = new NotificationBus(db);
 * bus.subscribe('runt_credentials', { message: (id) => cache.forget(id), up: () => cache.enable(), down: () => cache.disable() });
 * await bus.start();
 * await bus.close();
 */
export class NotificationBus {
  readonly #channels = new Map<string, Channel>();
  #started = false;
  #closed = false;

  constructor(
    private readonly db: Database,
    private readonly opts: NotificationBusOptions = {},
  ) {}

  /** True when notifications can arrive at all (Postgres with `listen`). */
  get available(): boolean {
    return this.db.backend === 'postgres' && this.db.listen !== undefined;
  }

  /** Adds a subscriber; after `start`, its channel is listened to at once. */
  subscribe(channel: string, handlers: ChannelHandlers): void {
    let c = this.#channels.get(channel);
    if (!c) this.#channels.set(channel, (c = { handlers: [] }));
    c.handlers.push(handlers);
    if (this.#started && !c.listener && !c.retry) void this.#listen(channel, c);
  }

  /** Listens on every subscribed channel; resolves once each first attempt is done (up, or a retry scheduled). */
  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    await Promise.all([...this.#channels].map(([name, c]) => this.#listen(name, c)));
  }

  async #listen(channel: string, c: Channel): Promise<void> {
    if (!this.available || this.#closed) return;
    try {
      const listener = await this.db.listen!(
        channel,
        (payload) => {
          for (const h of c.handlers) h.message(payload);
        },
        (err) => {
          c.listener = undefined;
          for (const h of c.handlers) h.down(err);
          this.opts.onListenError?.(channel, err, true);
          this.#retry(channel, c);
        },
      );
      if (this.#closed) return void (await listener.close());
      c.listener = listener;
      for (const h of c.handlers) h.up();
    } catch (e) {
      this.opts.onListenError?.(channel, e as Error, false);
      this.#retry(channel, c);
    }
  }

  #retry(channel: string, c: Channel): void {
    if (this.#closed || c.retry) return;
    c.retry = setTimeout(() => {
      c.retry = undefined;
      void this.#listen(channel, c);
    }, this.opts.relistenMs ?? 1000);
    c.retry.unref();
  }

  /** Stops listening on every channel (subscribers get no `down`: they are closing too). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const listeners: Listener[] = [];
    for (const c of this.#channels.values()) {
      clearTimeout(c.retry);
      c.retry = undefined;
      if (c.listener) listeners.push(c.listener);
      c.listener = undefined;
    }
    await Promise.all(listeners.map((l) => l.close()));
  }
}
