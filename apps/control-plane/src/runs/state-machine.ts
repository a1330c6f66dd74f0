import type { RunStatus } from '@runt/protocol';

/** The state changes of a run, one function each in `transitions.ts`. */
export type RunTransition =
  | 'submit'
  | 'offer'
  | 'claimOnOffer'
  | 'withdraw'
  | 'handBack'
  | 'claim'
  | 'start'
  | 'reportEvents'
  | 'finish'
  | 'loseRunner'
  | 'requeue'
  | 'cancel'
  | 'expireQueued'
  | 'timeOut'
  | 'retry';

/** How a run can end (the statuses `finish` may report). */
export type TerminalRunStatus = 'completed' | 'failed' | 'cancelled' | 'blocked';

/**
 * Why an attempt lost its runner: its lease ran out (`expired`: the runner went silent, and
 * may have started the workload before it did) or its runner gave the lease up (`released`:
 * the agent says the workload never started).
 */
export type LostCause = 'expired' | 'released';

/** One legal move: `transition` applied to a run in `from` (null: no run yet) leaves it in `to`. */
export interface RunMove {
  transition: RunTransition;
  from: RunStatus | null;
  to: RunStatus;
  /** For `requeue`: the one cause of a lost runner that allows it. */
  cause?: LostCause;
}

const TERMINAL: TerminalRunStatus[] = ['completed', 'failed', 'cancelled', 'blocked'];
const ACTIVE: RunStatus[] = ['accepted', 'running'];

/**
 * Every legal move of a run, and nothing else: the guards of the SQL in `transitions.ts` are
 * built from this table (`fromStatuses`), and the model test checks every change it observes
 * against it. Moves only go forward; the one way back to `queued` is an attempt that never ran
 * (a withdrawn, unclaimed or handed-back offer, or an attempt its runner released before
 * starting it).
 * Adding a status or a move starts here.
 */
export const RUN_MOVES: readonly RunMove[] = [
  { transition: 'submit', from: null, to: 'queued' },
  // a lone submit that places its own run inserts it already offered (the
  // scheduler's freshOffer: `submit` and `offer` in one write, under the scheduler's lock)
  { transition: 'submit', from: null, to: 'offered' },
  { transition: 'offer', from: 'queued', to: 'offered' },
  // declined by the agent, taken back from a draining workstation, or not claimed in time
  { transition: 'withdraw', from: 'offered', to: 'queued' },
  // claim on offer (issue 9): the scheduler places the run and takes its lease for the agent's
  // runner in one statement, for an agent whose link said it accepts offers that way
  { transition: 'claimOnOffer', from: 'queued', to: 'accepted' },
  // the agent hands back a run claimed for it on offer, before starting it (fenced by the
  // token): back to the queue with no attempt used, like a declined offer
  { transition: 'handBack', from: 'accepted', to: 'queued' },
  // ... unless its cancel was asked while it was accepted: it ends then, as a lost runner's would
  { transition: 'handBack', from: 'accepted', to: 'cancelled' },
  { transition: 'claim', from: 'offered', to: 'accepted' },
  // a retried claim, and an agent re-adopting its runs after a restart, keep the status
  { transition: 'claim', from: 'accepted', to: 'accepted' },
  { transition: 'claim', from: 'running', to: 'running' },
  { transition: 'start', from: 'accepted', to: 'running' },
  ...ACTIVE.map((s) => ({ transition: 'reportEvents' as const, from: s, to: s })),
  ...ACTIVE.flatMap((s) => TERMINAL.map((t) => ({ transition: 'finish' as const, from: s, to: t }))),
  // the lease ran out or was given up: a cancel-requested run ends cancelled, anything that
  // cannot be re-queued (see `requeue` below) fails with `runner-lost`: nothing starts twice
  ...ACTIVE.flatMap((s) =>
    (['failed', 'cancelled'] as const).map((t) => ({ transition: 'loseRunner' as const, from: s, to: t })),
  ),
  // At-most-once start: only a runner that says it never started the workload gives an attempt
  // back. An expired lease on an `accepted` run is NOT re-queued — the agent may have started
  // the workload and died before reporting `running` — it fails with `runner-lost` instead.
  { transition: 'requeue', from: 'accepted', to: 'queued', cause: 'released' },
  // queued and offered runs end at once; active ones get `cancel_requested` and end when their agent reports
  { transition: 'cancel', from: 'queued', to: 'cancelled' },
  { transition: 'cancel', from: 'offered', to: 'cancelled' },
  ...ACTIVE.map((s) => ({ transition: 'cancel' as const, from: s, to: s })),
  // never placed within its queue_timeout_s: blocked (failure kind unplaceable)
  { transition: 'expireQueued', from: 'queued', to: 'blocked' },
  // the sweeper's backstop for timeout_s when the agent did not stop it: failed (timeout)
  ...ACTIVE.map((s) => ({ transition: 'timeOut' as const, from: s, to: 'failed' as const })),
  // A failure the run's retry policy names (nonzero-exit / an exit code, runner-lost, timeout),
  // attempts left and no cancel asked: instead of `failed`, the next attempt waits in the queue.
  // The user asked for it, so unlike `requeue` this may start a workload again.
  ...ACTIVE.map((s) => ({ transition: 'retry' as const, from: s, to: 'queued' as const })),
];

/**
 * The statuses `transition` applies in.
 *
 * @example
 * fromStatuses('start'); // ['accepted']
 */
export function fromStatuses(transition: RunTransition): RunStatus[] {
  return [
    ...new Set(
      RUN_MOVES.filter((m) => m.transition === transition && m.from !== null).map((m) => m.from as RunStatus),
    ),
  ];
}

/**
 * True when the table allows `transition` to take a run from `from` to `to`.
 *
 * @example
 * isLegalMove('requeue', 'running', 'queued'); // false: a run that ran is never re-queued
 */
export function isLegalMove(transition: RunTransition, from: RunStatus | null, to: RunStatus): boolean {
  return RUN_MOVES.some((m) => m.transition === transition && m.from === from && m.to === to);
}

/**
 * True when an attempt that lost its runner for `cause` while in `from` may go back to the
 * queue (attempts left permitting); otherwise it fails with `runner-lost`.
 *
 * @example
 * mayRequeue('accepted', 'released'); // true: the agent never started it
 * mayRequeue('accepted', 'expired'); // false: the workload may have started
 */
export function mayRequeue(from: RunStatus, cause: LostCause): boolean {
  return RUN_MOVES.some((m) => m.transition === 'requeue' && m.from === from && m.cause === cause);
}

/**
 * `fromStatuses(transition)` as a SQL list for a guard: `r.status in (${statusesSql('finish')})`.
 *
 * @example
 * statusesSql('finish'); // "'accepted', 'running'"
 */
export function statusesSql(transition: RunTransition): string {
  return fromStatuses(transition)
    .map((s) => `'${s}'`)
    .join(', ');
}
