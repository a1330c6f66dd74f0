import type { MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Database } from '@runt/sql';
import { runCountsByStatus } from './panel/panel-reads.js';
import { EVENT_LOOP_SAMPLE_MS, registerEventLoopLateness } from './event-loop-lateness.js';

/**
 * Run-path counters, module-level so the scheduler and the stores count where they act without
 * a metrics handle; every registry {@link createMetrics} makes exposes them. The bench reads
 * offers and re-queues per run from them (healthy agents: 1.0 and 0), and SQL statements per run
 * from `runt_cp_sql_statements_total` (every statement of the database `server.ts` opens).
 */
export const runPathMetrics = {
  offers: new Counter({
    name: 'runt_cp_run_offers_total',
    help: 'Runs offered to a workstation by the scheduler',
    registers: [],
  }),
  offerMessages: new Counter({
    name: 'runt_cp_offer_messages_total',
    help: 'Offer messages sent over agent links held by this process (re-sends included): per run offered, 1.0 with healthy agents',
    registers: [],
  }),
  claimedOnOffer: new Counter({
    name: 'runt_cp_runs_claimed_on_offer_total',
    help: 'Runs placed with their lease already taken for the agent (claim on offer: no claim round trip)',
    registers: [],
  }),
  requeues: new Counter({
    name: 'runt_cp_run_requeues_total',
    help: 'Runs put back in the queue, by reason: declined (the agent answered an offer ok:false), handed-back (a run claimed on offer given back unstarted), unsent (a claim on offer its closed link never carried, handed back by the scheduler), offer-timeout, drain, runner-lost',
    labelNames: ['reason'] as const,
    registers: [],
  }),
  sqlStatements: new Counter({
    name: 'runt_cp_sql_statements_total',
    help: 'SQL statements sent to the database by this process (a query is one; a transaction adds BEGIN and COMMIT)',
    registers: [],
  }),
  writeBatches: new Counter({
    name: 'runt_cp_write_batches_total',
    help: 'Statements written by the group commit (runs/write-batcher.ts), by kind of write: events, start, finish, renew',
    labelNames: ['kind'] as const,
    registers: [],
  }),
  writeBatchItems: new Counter({
    name: 'runt_cp_write_batch_items_total',
    help: 'Writes carried by those statements, by kind (items ÷ batches = the mean batch size)',
    labelNames: ['kind'] as const,
    registers: [],
  }),
  writeBatchFallbacks: new Counter({
    name: 'runt_cp_write_batch_fallbacks_total',
    help: 'Batched statements that failed and were written again one item at a time, by kind',
    labelNames: ['kind'] as const,
    registers: [],
  }),
  sqlTransactions: new Counter({
    name: 'runt_cp_sql_transactions_total',
    help: 'SQL transactions opened by this process',
    registers: [],
  }),
};

/**
 * Agent-link counters (module-level like {@link runPathMetrics}): messages received by type, and
 * the fenced run calls answered over the link by op and HTTP-equivalent status, so the bench can
 * set link messages per run beside `runt_cp_http_requests_total`.
 */
export const linkMetrics = {
  messages: new Counter({
    name: 'runt_cp_link_messages_received_total',
    help: 'Messages received on agent links, by type (register, heartbeat, result, request, requests (a frame of them), invalid)',
    labelNames: ['type'] as const,
    registers: [],
  }),
  upgradesShed: new Counter({
    name: 'runt_cp_link_upgrades_shed_total',
    help: 'Link upgrades answered 503 at once because too many links were opening (LinkServerOptions.maxOpening)',
    registers: [],
  }),
  requests: new Counter({
    name: 'runt_cp_link_requests_total',
    help: 'Fenced run calls answered over agent links, by op and the HTTP status the same call answers with',
    labelNames: ['op', 'status'] as const,
    registers: [],
  }),
};

export interface ControlPlaneMetrics {
  registry: Registry;
  /** Counts and times every request by method, matched route pattern and status. */
  middleware: MiddlewareHandler;
}

/**
 * Prometheus metrics for `/metrics`: request counts and latencies by route pattern (never the
 * raw path, so ids do not explode the label space), process metrics, agent links held by this
 * process, and runs and workstations by status read from the database at scrape time.
 *
 * @example
 * const metrics = createMetrics({ db, linkCount: () => links.size });
 * app.use(metrics.middleware);
 * app.get('/metrics', async (c) => c.text(await metrics.registry.metrics()));
 */
export function createMetrics(deps: { db: Database; linkCount: () => number }): ControlPlaneMetrics {
  const registry = new Registry();
  collectDefaultMetrics({
    register: registry,
    prefix: 'runt_cp_',
    eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
  });
  registerEventLoopLateness(registry, 'runt_cp_');
  // prom-client names three gauges `…_total`, which Prometheus reserves for counters (promtool
  // check metrics flags them). Their by-type siblings (`runt_cp_nodejs_active_handles{type}` …)
  // stay and sum to the same numbers.
  for (const name of [
    'nodejs_active_handles_total',
    'nodejs_active_requests_total',
    'nodejs_active_resources_total',
  ]) {
    registry.removeSingleMetric(`runt_cp_${name}`);
  }
  registry.registerMetric(runPathMetrics.offers);
  registry.registerMetric(runPathMetrics.offerMessages);
  registry.registerMetric(runPathMetrics.claimedOnOffer);
  registry.registerMetric(runPathMetrics.requeues);
  registry.registerMetric(runPathMetrics.sqlStatements);
  registry.registerMetric(runPathMetrics.sqlTransactions);
  registry.registerMetric(linkMetrics.messages);
  registry.registerMetric(linkMetrics.requests);
  registry.registerMetric(linkMetrics.upgradesShed);
  registry.registerMetric(runPathMetrics.writeBatches);
  registry.registerMetric(runPathMetrics.writeBatchItems);
  registry.registerMetric(runPathMetrics.writeBatchFallbacks);
  const requests = new Counter({
    name: 'runt_cp_http_requests_total',
    help: 'HTTP requests by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'runt_cp_http_request_duration_seconds',
    help: 'HTTP request latency by method and route pattern',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  new Gauge({
    name: 'runt_cp_agent_links',
    help: 'Agent links (WebSockets) held by this process',
    registers: [registry],
    collect() {
      this.set(deps.linkCount());
    },
  });
  new Gauge({
    name: 'runt_cp_runs',
    help: 'Runs by status',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      // Each status through its index (the panel's counts, uncapped), not a sequential scan of
      // every run ever kept (docs/runs.md, "The indexes of runs").
      const counts = await runCountsByStatus(deps.db, {}, null);
      this.reset();
      for (const [status, n] of counts) this.set({ status }, n);
    },
  });

  const middleware: MiddlewareHandler = async (c, next) => {
    const end = duration.startTimer();
    await next();
    const route = routePath(c, -1) || 'unmatched';
    const labels = {
      method: c.req.method,
      route: c.res.status === 404 && route.endsWith('*') ? 'unmatched' : route,
    };
    end(labels);
    requests.inc({ ...labels, status: String(c.res.status) });
  };
  return { registry, middleware };
}
