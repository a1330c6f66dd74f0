import { z } from 'zod';
import { leaseMsSchema } from './lease-limits.js';
import { labelsSchema, registerWorkstationRequestSchema, runtimeNameSchema } from './schemas.js';
import {
  agentRequestMessageSchema,
  agentRequestsMessageSchema,
  controlRepliesMessageSchema,
  controlReplyMessageSchema,
  type LinkOp,
} from './link-requests.js';
import { envNameSchema, MAX_SECRETS_PER_RUN, submitEnvValueSchema } from './secret-env.js';

// ---- runs ----------------------------------------------------------------------------------

/** `queued → offered → accepted → running → completed | failed | cancelled | blocked`; only forward. */
export const runStatusSchema = z.enum([
  'queued',
  'offered',
  'accepted',
  'running',
  'completed',
  'failed',
  'cancelled',
  'blocked',
]);
export type RunStatus = z.infer<typeof runStatusSchema>;
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ['completed', 'failed', 'cancelled', 'blocked'];
export const isTerminalRunStatus = (s: RunStatus): boolean => TERMINAL_RUN_STATUSES.includes(s);

/** Failure kinds: extend, never rename. */
export const failureKindSchema = z.enum([
  'schema-invalid',
  'runtime-unavailable',
  'image-unavailable',
  'start-failed',
  'nonzero-exit',
  'runner-lost',
  'runner-lease-conflict',
  'cancelled',
  'timeout',
  'internal',
  /** Never placed within its `queue_timeout_s` (the run ends `blocked`). */
  'unplaceable',
]);
export type FailureKind = z.infer<typeof failureKindSchema>;

const envKey = envNameSchema;
/** An exit code's bounds as Postgres stores it (a 32-bit integer): POSIX codes are 0–255, Windows' fit in 32 bits. */
export const EXIT_CODE_MIN = -(2 ** 31);
export const EXIT_CODE_MAX = 2 ** 31 - 1;
export const exitCodeSchema = z.number().int().min(EXIT_CODE_MIN).max(EXIT_CODE_MAX);
export const sha256Schema = z.string().regex(/^[a-f0-9]{64}$/, 'a lowercase hex sha256');

/** Runtimes whose runs start an image, so a run on them without `image` could never start. */
export const CONTAINER_RUNTIMES: readonly string[] = ['docker', 'podman'];

/**
 * A run that could never do what its author meant is refused at submit (400), not failed later
 * by an agent: a `process` run needs a command (the runtime's default is an endless idle loop
 * for workspaces, which would hold a slot forever) and a container run needs an image.
 */
function requireWhatTheRuntimeNeeds(
  run: { runtime: string; image?: string | undefined; command: string[] },
  ctx: z.RefinementCtx,
): void {
  if (run.runtime === 'process' && run.command.length === 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['command'],
      message: 'a run on the process runtime needs a command (e.g. ["sh", "-c", "make test"])',
    });
  }
  if (CONTAINER_RUNTIMES.includes(run.runtime) && !run.image) {
    ctx.addIssue({
      code: 'custom',
      path: ['image'],
      message: `a run on the ${run.runtime} runtime needs an image`,
    });
  }
}

/** A run or queue timeout in seconds: 1 s to 30 days. */
export const runTimeoutSchema = z
  .number()
  .int()
  .min(1)
  .max(30 * 24 * 3600);

/** What a retry policy retries: a failure kind, or an exit code (a `nonzero-exit` with that code). */
export const retryOnSchema = z.union([
  z.enum(['nonzero-exit', 'runner-lost', 'timeout']),
  exitCodeSchema.refine((n) => n !== 0, 'exit code 0 is a success, never retried'),
]);
export type RetryOn = z.infer<typeof retryOnSchema>;

/**
 * Automatic retry, as Buildkite's `retry.automatic`: an attempt that fails in a way `on` names
 * (a failure kind, or a `nonzero-exit` with one of the listed exit codes) goes back to the queue
 * as the next attempt, after `backoff` (`initial_s`, times `factor` for each further retry, at
 * most `max_s`), while the run has attempts left. `max_attempts` (attempts in all, the first
 * included) replaces the run's `max_attempts` when given. A cancelled run is never retried.
 */
export const retryPolicySchema = z.object({
  on: z.array(retryOnSchema).min(1).max(64),
  max_attempts: z.number().int().min(1).max(20).optional(),
  backoff: z
    .object({
      initial_s: z.number().min(0).max(3600).default(5),
      factor: z.number().min(1).max(10).default(2),
      max_s: z.number().min(0).max(86_400).default(300),
    })
    .prefault({}),
});
export type RetryPolicy = z.output<typeof retryPolicySchema>;

export const submitRunRequestSchema = z
  .object({
    runtime: runtimeNameSchema,
    image: z.string().min(1).max(512).optional(),
    command: z.array(z.string().max(16_384)).max(1024).default([]),
    /** Env of the workload; an entry `{value, secret: true}` is a secret (see `secret-env.ts`): stored sealed, never shown. */
    env: z
      .record(envKey, submitEnvValueSchema)
      .default({})
      .refine(
        (env) =>
          Object.values(env).filter((v) => typeof v !== 'string' && v.secret).length <= MAX_SECRETS_PER_RUN,
        `at most ${MAX_SECRETS_PER_RUN} secret env entries`,
      ),
    workdir: z.string().min(1).max(4096).optional(),
    /** Report `running` when this line first appears in the output (instead of at start). */
    ready_when: z.object({ log_line: z.string().min(1).max(4096) }).optional(),
    placement: z
      .object({ workstation_id: z.string().min(1).optional(), labels: labelsSchema.optional() })
      .default({}),
    resources: z
      .object({
        cpus: z.number().positive().max(1024).optional(),
        memory_bytes: z.number().int().positive().optional(),
      })
      .default({}),
    /** Attempts in all; a lost runner re-queues a run that never reached `running` while attempts remain. */
    max_attempts: z.number().int().min(1).max(20).default(3),
    /** Failed attempts to retry automatically (see `retryPolicySchema`); none by default. */
    retry: retryPolicySchema.optional(),
    /** Seconds the workload may run (from its start); past it, it is stopped (TERM, then KILL) and the run fails with `timeout`. Default: the control plane's `RUNT_RUN_TIMEOUT_S` (none when unset). */
    timeout_s: runTimeoutSchema.optional(),
    /** Seconds the run may wait to be placed; past it, it ends `blocked` with `unplaceable`. Default: `RUNT_QUEUE_TIMEOUT_S` (none when unset). */
    queue_timeout_s: runTimeoutSchema.optional(),
    /** A bundle uploaded with `PUT /api/bundles/:sha256` (a tar, optionally gzipped), unpacked into the working directory. */
    bundle: z.object({ sha256: sha256Schema }).optional(),
    /** Same key within 24 h → the same run (a retried submit does not create a second run). */
    idempotency_key: z.string().min(1).max(200).optional(),
  })
  .superRefine(requireWhatTheRuntimeNeeds);
export type SubmitRunRequest = z.input<typeof submitRunRequestSchema>;

/**
 * Why a queued run is not placed (like Nomad's placement failures), derived when the run is read
 * from the fleet as it stands then: `no-runtime` (no workstation offers the runtime),
 * `no-label-match` (none with it matches the placement labels, or the pinned workstation is
 * gone), `offline` (every match is offline, draining or not listening), `full` (every match that
 * is online has no free slot, cpus or memory), `retry-backoff` (a retried run waiting out its
 * backoff until `not_before`). `null` on a queued run that the next scheduling
 * pass can place, and on every run that is not queued.
 */
export const pendingReasonSchema = z.object({
  code: z.enum(['no-runtime', 'no-label-match', 'offline', 'full', 'retry-backoff']),
  message: z.string(),
});
export type PendingReason = z.infer<typeof pendingReasonSchema>;

/**
 * One attempt of a run. Its events are those with `first_event_seq <= seq <= last_event_seq`
 * (`last_event_seq` null: the last attempt, whose events run to the end of the log).
 */
export const runAttemptSchema = z.object({
  attempt: z.number(),
  /** The attempt's own outcome: a retried attempt is `failed`, the last one has the run's status. */
  status: runStatusSchema,
  workstation_id: z.string().nullable(),
  exit_code: z.number().nullable(),
  failure_kind: failureKindSchema.nullable(),
  failure_message: z.string().nullable(),
  accepted_at: z.string().nullable(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  first_event_seq: z.number(),
  last_event_seq: z.number().nullable(),
  /** When it was retried: the next attempt is not placed before this time (the backoff). */
  retry_at: z.string().nullable(),
});
export type RunAttempt = z.infer<typeof runAttemptSchema>;

export const runSchema = z.object({
  id: z.string(),
  status: runStatusSchema,
  runtime: z.string(),
  image: z.string().nullable(),
  command: z.array(z.string()),
  /** The workload's env; a secret entry's value reads `***` (`SECRET_MASK`). */
  env: z.record(z.string(), z.string()),
  /** The names of the env entries that are secrets (their values are never sent but to the agent holding the lease). */
  secret_env_names: z.array(z.string()).optional(),
  workdir: z.string().nullable(),
  ready_when: z.object({ log_line: z.string() }).nullable(),
  placement: z.object({
    workstation_id: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
  }),
  resources: z.object({ cpus: z.number().optional(), memory_bytes: z.number().optional() }),
  bundle: z.object({ sha256: z.string() }).nullable(),
  max_attempts: z.number(),
  /** 1 for the first attempt; bumped on every claim after a re-queue. */
  attempt: z.number(),
  workstation_id: z.string().nullable(),
  lease: z.object({ holder: z.string(), fencing_token: z.number(), expires_at: z.string() }).nullable(),
  exit_code: z.number().nullable(),
  failure_kind: failureKindSchema.nullable(),
  failure_message: z.string().nullable(),
  cancel_requested: z.boolean(),
  created_at: z.string(),
  offered_at: z.string().nullable(),
  accepted_at: z.string().nullable(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  /** The run's time limit in seconds once started (null: none). */
  timeout_s: z.number().nullable().optional(),
  /** How long the run may stay unplaced, in seconds (null: no limit). */
  queue_timeout_s: z.number().nullable().optional(),
  /** The run's automatic retry policy (null: none). */
  retry: retryPolicySchema.nullable().optional(),
  /** A queued retry is not placed before this time (its backoff); null otherwise. */
  not_before: z.string().nullable().optional(),
  /** Every attempt so far, first to last, with its own outcome and event range; sent on `GET /api/runs/{id}`. */
  attempts: z.array(runAttemptSchema).optional(),
  /** Why a queued run waits (see `pendingReasonSchema`); sent on operator reads (`GET /api/runs`, `GET /api/runs/{id}`). */
  pending_reason: pendingReasonSchema.nullable().optional(),
});
export type Run = z.infer<typeof runSchema>;

export const runResponseSchema = z.object({ run: runSchema });

/** At most this many runs in one `POST /api/runs/batch`. */
export const MAX_RUNS_PER_BATCH = 1000;
/** `POST /api/runs/batch`: runs submitted in one request and one insert, each as `POST /api/runs` would. */
export const submitRunsBatchRequestSchema = z.object({
  runs: z.array(submitRunRequestSchema).min(1).max(MAX_RUNS_PER_BATCH),
});
export type SubmitRunsBatchRequest = z.input<typeof submitRunsBatchRequestSchema>;
/** One answer per submitted run, in order; `created: false` for an idempotent repeat (the run its key created first). */
export const submitRunsBatchResponseSchema = z.object({
  runs: z.array(z.object({ run: runSchema, created: z.boolean() })),
});
export const listRunsQuerySchema = z.object({
  status: runStatusSchema.optional(),
  workstation_id: z.string().optional(),
  runtime: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  /** Opaque cursor from `next_cursor`. */
  cursor: z.string().optional(),
});
export const listRunsResponseSchema = z.object({
  runs: z.array(runSchema),
  next_cursor: z.string().nullable(),
});
export type ListRunsResponse = z.infer<typeof listRunsResponseSchema>;

// ---- leases (agent side, fenced) --------------------------------------------------------------

export const claimRunRequestSchema = z.object({
  runner_id: z.string().min(1).max(200),
  lease_ms: leaseMsSchema,
});
export const claimRunResponseSchema = z.object({
  fencing_token: z.number(),
  expires_at: z.string(),
  run: runSchema,
  /** The seq the holder's first event must carry (events are gap-free per run across attempts). */
  next_event_seq: z.number(),
  /**
   * Whether the run has commands waiting (an agent with a live link need not list them now).
   * A control plane that sends it also takes `events` on a status report and releases the
   * lease with a terminal report.
   */
  pending_commands: z.boolean().optional(),
  /**
   * The values of the run's secret env entries, by name: sent only in a claim answer, to the
   * agent holding the lease (which puts them in the workload's env over the masked `run.env`
   * and masks them in the output).
   */
  secret_env: z.record(z.string(), z.string()).optional(),
});
export type ClaimRunResponse = z.infer<typeof claimRunResponseSchema>;

export const heartbeatRunRequestSchema = z.object({
  fencing_token: z.number().int(),
  lease_ms: leaseMsSchema,
});
export const heartbeatRunResponseSchema = z.object({ expires_at: z.string(), cancel_requested: z.boolean() });
export const okResponseSchema = z.object({ ok: z.literal(true) });
export const releaseRunRequestSchema = z.object({ fencing_token: z.number().int() });
/** Hand back a run claimed on offer that the agent will not start, fenced by the token it came with. */
export const handBackRunRequestSchema = z.object({ fencing_token: z.number().int() });
/**
 * `handed_back: false`: it did not apply (already handed back, started, or no longer this
 * token's). `status`: what became of the run when it did — `queued` again, or `cancelled` (its
 * cancel was asked while it was accepted); absent from control planes before 2026-12-02.
 */
export const handBackRunResponseSchema = z.object({
  handed_back: z.boolean(),
  status: z.enum(['queued', 'cancelled']).optional(),
});
export type HandBackRunResponse = z.infer<typeof handBackRunResponseSchema>;

// ---- events ------------------------------------------------------------------------------

export const eventTypeSchema = z.enum([
  'log',
  'backend_status',
  'command_status',
  'error',
  'terminal_status',
]);
export type EventType = z.infer<typeof eventTypeSchema>;

/** Payload shapes by type: `log` {stream:'stdout'|'stderr', data}; `backend_status` {state, …}; `command_status` {command_id, state, exit_code?}; `error` {message}; `terminal_status` {status, exit_code?, failure_kind?}. */
export const runEventInputSchema = z.object({
  /** Assigned by the holder, gap-free per run, starting at `next_event_seq`; a resent seq is ignored. */
  seq: z.number().int().min(1),
  type: eventTypeSchema,
  payload: z.record(z.string(), z.unknown()),
  at: z.string().datetime().optional(),
});
export type RunEventInput = z.infer<typeof runEventInputSchema>;

/*
 * The bounds of a run's fenced reports (HTTP and link ops alike): one home, read by the schemas
 * below and by the link's fast check of the same messages (`agent-message-fast.ts`).
 */
/** Events in one append or one status report. */
export const MAX_EVENTS_PER_REQUEST = 1000;
/** Characters of a status report's `failure_message`. */
export const MAX_FAILURE_MESSAGE_CHARS = 4096;
/** A terminal report's `started_ms_ago` (a Postgres 32-bit integer). */
export const MAX_STARTED_MS_AGO = 2_147_483_647;

export const appendEventsRequestSchema = z.object({
  fencing_token: z.number().int(),
  events: z.array(runEventInputSchema).min(1).max(MAX_EVENTS_PER_REQUEST),
});
export const appendEventsResponseSchema = z.object({ next_event_seq: z.number() });

export const runReportStatusSchema = z.enum(['running', 'completed', 'failed', 'cancelled', 'blocked']);
export const reportRunStatusRequestSchema = z.object({
  fencing_token: z.number().int(),
  status: runReportStatusSchema,
  exit_code: exitCodeSchema.optional(),
  failure_kind: failureKindSchema.optional(),
  failure_message: z.string().max(MAX_FAILURE_MESSAGE_CHARS).optional(),
  /**
   * Events appended in the same fenced transaction, before the status (same rules as
   * `POST /runs/:id/events`: gap-free seqs, resends dropped). A terminal report's
   * `terminal_status` event follows them.
   */
  events: z.array(runEventInputSchema).max(MAX_EVENTS_PER_REQUEST).optional(),
  /**
   * What the answer carries: `run` (the default) the whole run after the report; `brief` only
   * the run's status and the next seq (`reportRunStatusBriefResponseSchema`): what an agent
   * needs, without the run's env, command and timestamps encoded, sent and parsed twice a run.
   * A control plane that predates it ignores it and answers with the run, which the brief
   * schema also reads.
   */
  answer: z.enum(['run', 'brief']).optional(),
  /**
   * On a terminal report of a run whose `running` report was never sent (it ended first): the
   * workload started this many ms before the report. The run's start is recorded with its end,
   * `started_at` = the database's now minus this (never before `accepted_at`), one report and
   * one row update instead of two. Sent only to a control plane that lists
   * `STATUS_STARTED_FORM` in `registered.ops`; ignored on a `running` report.
   */
  started_ms_ago: z.number().int().min(0).max(MAX_STARTED_MS_AGO).optional(),
});
export type ReportRunStatusRequest = z.infer<typeof reportRunStatusRequestSchema>;
/** The run after the report, and (from control planes that take `events` on a report) the next seq. */
export const reportRunStatusResponseSchema = z.object({
  run: runSchema,
  next_event_seq: z.number().optional(),
});
/**
 * The answer to a report sent with `answer: 'brief'`: the run's status after it and the next
 * seq. Also reads a whole-run answer (an older control plane's; its `run` is not parsed).
 */
export const reportRunStatusBriefResponseSchema = z.object({
  status: runStatusSchema.optional(),
  next_event_seq: z.number().optional(),
});
export type ReportRunStatusBriefResponse = z.infer<typeof reportRunStatusBriefResponseSchema>;

export const runEventSchema = z.object({
  run_id: z.string(),
  seq: z.number(),
  type: eventTypeSchema,
  payload: z.record(z.string(), z.unknown()),
  at: z.string(),
});
export type RunEvent = z.infer<typeof runEventSchema>;
export const listEventsQuerySchema = z.object({
  after_seq: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(5000).default(1000),
});
export const listEventsResponseSchema = z.object({
  events: z.array(runEventSchema),
  next_after_seq: z.number(),
  run_status: runStatusSchema,
});

// ---- commands ----------------------------------------------------------------------------

export const commandStateSchema = z.enum(['pending', 'acked', 'completed', 'failed', 'cancelled']);
export const commandPayloadSchema = z.object({
  type: z.literal('exec'),
  command: z.array(z.string().max(16_384)).min(1).max(1024),
  env: z.record(envKey, z.string().max(65_536)).optional(),
  stdin: z.string().max(1_048_576).optional(),
});
export const queueCommandRequestSchema = commandPayloadSchema;
export type QueueCommandRequest = z.infer<typeof queueCommandRequestSchema>;
export const runCommandSchema = z.object({
  id: z.string(),
  run_id: z.string(),
  seq: z.number(),
  payload: commandPayloadSchema,
  state: commandStateSchema,
  exit_code: z.number().nullable(),
  created_at: z.string(),
  acked_at: z.string().nullable(),
  finished_at: z.string().nullable(),
});
export type RunCommand = z.infer<typeof runCommandSchema>;
export const commandResponseSchema = z.object({ command: runCommandSchema });
export const listCommandsResponseSchema = z.object({ commands: z.array(runCommandSchema) });
export const ackCommandRequestSchema = z.object({ fencing_token: z.number().int() });
export const commandStatusRequestSchema = z.object({
  fencing_token: z.number().int(),
  state: z.enum(['completed', 'failed', 'cancelled']),
  exit_code: exitCodeSchema.optional(),
  message: z.string().max(4096).optional(),
});

// ---- bundles -----------------------------------------------------------------------------

export const bundleResponseSchema = z.object({
  bundle: z.object({ sha256: z.string(), size_bytes: z.number() }),
});

// ---- the agent link (WebSocket at GET /api/agent/link) -------------------------------------

/** The body schema of each link op: the schema of the HTTP endpoint it stands for. */
export const LINK_OP_REQUEST_SCHEMAS = {
  claim: claimRunRequestSchema,
  heartbeat: heartbeatRunRequestSchema,
  events: appendEventsRequestSchema,
  status: reportRunStatusRequestSchema,
  release: releaseRunRequestSchema,
  'command-ack': ackCommandRequestSchema,
  'command-status': commandStatusRequestSchema,
  'hand-back': handBackRunRequestSchema,
} as const satisfies Record<LinkOp, z.ZodType>;

export const agentRegisterMessageSchema = z.object({
  type: z.literal('register'),
  /** The workstation id the agent believes it is; the credential's workstation is authoritative. */
  workstation_id: z.string().optional(),
  workstation: registerWorkstationRequestSchema,
  /** Runs this agent still holds (after a restart: re-adopted), so capacity is recomputed. */
  running_run_ids: z.array(z.string()).max(10_000),
  /**
   * Claim on offer (issue 9): this agent takes offers already claimed for its runner with this
   * lease length (`offer-claimed`), and hands back with `result {ok:false, fencing_token}` (or the
   * answered `hand-back` op) what it will not start. Without it the control plane sends plain `offer`s.
   */
  claim_on_offer: z.object({ runner_id: z.string().min(1).max(200), lease_ms: leaseMsSchema }).optional(),
});
export const agentHeartbeatMessageSchema = z.object({
  type: z.literal('heartbeat'),
  running_run_ids: z.array(z.string()).max(10_000).optional(),
});
export const agentResultMessageSchema = z.object({
  type: z.literal('result'),
  id: z.string(),
  ok: z.boolean(),
  error: z.string().optional(),
  /** With `ok:false` on a run of an `offer-claimed`: the token it came with (the hand-back is fenced by it). */
  fencing_token: z.number().int().optional(),
});
export const agentMessageSchema = z.discriminatedUnion('type', [
  agentRegisterMessageSchema,
  agentHeartbeatMessageSchema,
  agentResultMessageSchema,
  /** A fenced run operation over the link (see `link-requests.ts`). */
  agentRequestMessageSchema,
  /** Several of them in one frame, where the control plane listed `LINK_REQUESTS_FORM`. */
  agentRequestsMessageSchema,
]);
export type AgentMessage = z.infer<typeof agentMessageSchema>;

/** Runs in one `offer-claimed` message (read by its schema and by `control-message-fast.ts`). */
export const MAX_RUNS_PER_OFFER = 1000;
export const controlMessageSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('registered'),
    workstation_id: z.string(),
    /** The link ops this control plane serves (beyond `BASE_LINK_OPS`, send only those listed). */
    ops: z.array(z.string().max(64)).max(64).optional(),
  }),
  z.object({ type: z.literal('offer'), id: z.string(), run: runSchema }),
  /**
   * Claim on offer (to agents that asked for it in `register`): runs placed on this workstation
   * with their leases already taken for the agent's runner, each exactly what a claim answers.
   * The agent starts them without a claim round trip, or hands one back (`result` with `ok:false`
   * and its `fencing_token`: back to the queue, no attempt used). One message carries every run
   * a scheduling pass placed on the workstation.
   */
  z.object({
    type: z.literal('offer-claimed'),
    runs: z.array(claimRunResponseSchema).min(1).max(MAX_RUNS_PER_OFFER),
  }),
  z.object({ type: z.literal('cancel'), run_id: z.string() }),
  z.object({ type: z.literal('command'), run_id: z.string() }),
  z.object({ type: z.literal('drain') }),
  z.object({ type: z.literal('ping'), id: z.string() }),
  /** The answer to an agent's `request` (see `link-requests.ts`). */
  controlReplyMessageSchema,
  /** The answers to a `requests` frame, in its order. */
  controlRepliesMessageSchema,
]);
export type ControlMessage = z.infer<typeof controlMessageSchema>;

/** WebSocket close codes the control plane uses. */
/** WebSocket close codes the control plane uses; `rateLimited`: more messages than the per-link budget (reconnect later). */
export const LINK_CLOSE_CODES = {
  revoked: 4001,
  replaced: 4002,
  invalid: 4400,
  rateLimited: 4429,
  shutdown: 1001,
} as const;
