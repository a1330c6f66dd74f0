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
  /** Told when a LISTEN failed (`lost: false`) or its connection dropped (`lost: true`); `channel`: the connection's channels, comma-separated. */
  onListenError?: (channel: string, err: Error | undefined, lost: boolean) => void;
}

interface Channel {
  handlers: ChannelHandlers[];
  group?: Group;
}

/** Channels listened to on one connection. */
interface Group {
  channels: string[];
  listener?: Listener;
  retry?: NodeJS.Timeout;
}

/**
 * Notifications between control-plane replicas over `Database.listen` (Postgres `LISTEN` /
 * `NOTIFY`), re-established after the connection drops. Every channel subscribed before `start`
 * shares ONE dedicated connection (a channel subscribed later gets its own): Postgres wakes
 * every process listening in the database on each `NOTIFY` of any channel, so a connection per
 * channel made each notification wake three server processes per replica (issue 10's
 * cross-replica tail). Subscribers get every message of their channel plus `up`/`down` (of the
 * shared connection), so a cache can stop trusting itself while it is down. On PGlite (one
 * process, no `listen`) nothing is delivered and `start` does nothing: there is no other
 * replica to hear from.
 *
 * @example
 * const bus = new NotificationBus(db);
 * bus.subscribe('runt_credentials', { message: (id) => cache.forget(id), up: () => cache.enable(), down: () => cache.disable() });
 * await bus.start();
 * await bus.close();
 */
export class NotificationBus {
  readonly #channels = new Map<string, Channel>();
  readonly #groups: Group[] = [];
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

  /** Adds a subscriber; after `start`, its channel is listened to at once (on its own connection). */
  subscribe(channel: string, handlers: ChannelHandlers): void {
    let c = this.#channels.get(channel);
    if (!c) this.#channels.set(channel, (c = { handlers: [] }));
    c.handlers.push(handlers);
    if (this.#started && !c.group) void this.#listen(this.#group([channel]));
  }

  /** Listens on every subscribed channel (one connection); resolves once the first attempt is done (up, or a retry scheduled). */
  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    if (this.#channels.size > 0) await this.#listen(this.#group([...this.#channels.keys()]));
  }

  #group(channels: string[]): Group {
    const g: Group = { channels };
    for (const name of channels) this.#channels.get(name)!.group = g;
    this.#groups.push(g);
    return g;
  }

  #each(g: Group, f: (h: ChannelHandlers) => void): void {
    for (const name of g.channels) for (const h of this.#channels.get(name)!.handlers) f(h);
  }

  async #listen(g: Group): Promise<void> {
    if (!this.available || this.#closed) return;
    try {
      const listener = await this.db.listen!(
        g.channels,
        (payload, channel) => {
          for (const h of this.#channels.get(channel)?.handlers ?? []) h.message(payload);
        },
        (err) => {
          g.listener = undefined;
          this.#each(g, (h) => h.down(err));
          this.opts.onListenError?.(g.channels.join(','), err, true);
          this.#retry(g);
        },
      );
      if (this.#closed) return void (await listener.close());
      g.listener = listener;
      this.#each(g, (h) => h.up());
    } catch (e) {
      this.opts.onListenError?.(g.channels.join(','), e as Error, false);
      this.#retry(g);
    }
  }

  #retry(g: Group): void {
    if (this.#closed || g.retry) return;
    g.retry = setTimeout(() => {
      g.retry = undefined;
      void this.#listen(g);
    }, this.opts.relistenMs ?? 1000);
    g.retry.unref();
  }

  /** Stops listening on every channel (subscribers get no `down`: they are closing too). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const listeners: Listener[] = [];
    for (const g of this.#groups) {
      clearTimeout(g.retry);
      g.retry = undefined;
      if (g.listener) listeners.push(g.listener);
      g.listener = undefined;
    }
    await Promise.all(listeners.map((l) => l.close()));
  }
}
