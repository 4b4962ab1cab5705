import type { CodeOfKind } from '../error-catalog.js';
import { ConflictError } from '../errors.js';
import type { ContainerStatus } from '../schemas/container.js';

/**
 * The container state machine in one place: which operation each status allows (and, if not, the error a caller
 * gets), and which status changes are legal. Every guard asks `assertAllowed`; `setStatus` is the only writer of a
 * container's status. The README's "How it works" shows both tables (`renderStateTables`, checked by a test).
 */

export const STATUSES = [
  'creating',
  'created',
  'running',
  'paused',
  'stopped',
] as const satisfies readonly ContainerStatus[];

export const OPERATIONS = [
  'start',
  'exec',
  'attach',
  'kill',
  'stop',
  'restart',
  'pause',
  'resume',
  'delete',
  'delete --force',
  'processes',
  'stats',
  'update',
  'logs',
  'wait',
] as const;
export type ContainerOperation = (typeof OPERATIONS)[number];

/** Why an operation is refused in a status: the error code and the message (given the container id). */
export interface Refusal {
  code: CodeOfKind<'conflict'>;
  message: (id: string) => string;
}

type Rule = 'allowed' | Refusal;

const refuse = (code: CodeOfKind<'conflict'>, message: string | ((id: string) => string)): Refusal => ({
  code,
  message: typeof message === 'string' ? () => message : message,
});

/**
 * `creating` is only seen by operations that do not take the id's lock (create and a restart's recreate hold it
 * while the status is creating). Its refusal says "still being created" everywhere; the code names what the
 * operation needs: one that acts on the container as a whole (start, stop, restart, delete) needs it created
 * (container_not_created); one that needs its processes (exec, kill, pause, processes, stats, update) needs it
 * running (container_not_running); resume keeps its own container_not_paused.
 */
const stillCreating = (code: CodeOfKind<'conflict'>): Refusal =>
  refuse(code, (id) => `container "${id}" is still being created`);
const notRunning = refuse('container_not_running', (id) => `container "${id}" is not running`);
const notStopped = (status: ContainerStatus): Refusal =>
  refuse('container_not_stopped', `cannot delete container that is not stopped: ${status}`);
const cannotPause = (status: ContainerStatus): Refusal =>
  refuse('container_not_running', `cannot pause a container that is ${status}`);
const cannotResume = (status: ContainerStatus): Refusal =>
  refuse('container_not_paused', `cannot resume a container that is ${status}`);
const cannotUpdate = (status: ContainerStatus): Refusal =>
  refuse('container_not_running', `cannot change the resources of a container that is ${status}`);

export const OPERATION_RULES: Record<ContainerOperation, Record<ContainerStatus, Rule>> = {
  start: {
    creating: stillCreating('container_not_created'),
    created: 'allowed',
    running: refuse('container_already_running', 'cannot start an already running container'),
    paused: refuse('container_paused', 'cannot start a paused container: resume it instead'),
    stopped: refuse('container_stopped', 'cannot start a container that has stopped'),
  },
  // runc 1.1 execs into a created container as into a running one.
  exec: {
    creating: stillCreating('container_not_running'),
    created: 'allowed',
    running: 'allowed',
    paused: refuse('container_paused', 'cannot exec into a paused container: resume it first'),
    stopped: refuse('container_stopped', 'cannot exec into a stopped container'),
  },
  // conmon's attach socket exists from create until the container ends. A created container may be attached
  // (its output from the start on is seen), but input waits for the start: a ^C typed into the pty of a created
  // container would kill runc's init before it ever ran the process.
  attach: {
    creating: stillCreating('container_not_running'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: refuse('container_stopped', 'cannot attach to a stopped container: start it first'),
  },
  // A paused container is resumed after the signal so that it is delivered.
  kill: {
    creating: stillCreating('container_not_running'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: notRunning,
  },
  // Stopping a stopped container answers it as it is (Docker: 304), not an error.
  stop: {
    creating: stillCreating('container_not_created'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: 'allowed',
  },
  restart: {
    creating: stillCreating('container_not_created'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: 'allowed',
  },
  pause: {
    creating: stillCreating('container_not_running'),
    created: cannotPause('created'),
    running: 'allowed',
    paused: cannotPause('paused'),
    stopped: cannotPause('stopped'),
  },
  resume: {
    creating: stillCreating('container_not_paused'),
    created: cannotResume('created'),
    running: cannotResume('running'),
    paused: 'allowed',
    stopped: cannotResume('stopped'),
  },
  // `runc delete` kills and removes a created container without --force; a running or paused one needs it.
  delete: {
    creating: stillCreating('container_not_created'),
    created: 'allowed',
    running: notStopped('running'),
    paused: notStopped('paused'),
    stopped: 'allowed',
  },
  'delete --force': {
    creating: stillCreating('container_not_created'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: 'allowed',
  },
  processes: {
    creating: stillCreating('container_not_running'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: notRunning,
  },
  stats: {
    creating: stillCreating('container_not_running'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: notRunning,
  },
  // `runc update` needs the container's cgroup, which exists from create until it stops.
  update: {
    creating: stillCreating('container_not_running'),
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: cannotUpdate('stopped'),
  },
  logs: {
    creating: 'allowed',
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: 'allowed',
  },
  wait: {
    creating: 'allowed',
    created: 'allowed',
    running: 'allowed',
    paused: 'allowed',
    stopped: 'allowed',
  },
};

/** The refusal of `operation` in `status`, or undefined when it is allowed. */
export function refusalOf(operation: ContainerOperation, status: ContainerStatus): Refusal | undefined {
  const rule = OPERATION_RULES[operation][status];
  return rule === 'allowed' ? undefined : rule;
}

/** Throws the operation's ConflictError when the container's status does not allow it. */
export function assertAllowed(
  operation: ContainerOperation,
  container: { readonly id: string; readonly status: ContainerStatus },
): void {
  const refusal = refusalOf(operation, container.status);
  if (refusal) throw new ConflictError(refusal.code, refusal.message(container.id), container.id);
}

/** Every legal change of status, with what makes it. Deleting a container removes its record: not a status. */
export const TRANSITIONS: ReadonlyArray<{ from: ContainerStatus; to: ContainerStatus; by: string }> = [
  {
    from: 'creating',
    to: 'created',
    by: 'create (conmon reported the init pid); reconcile finishing a create',
  },
  { from: 'creating', to: 'stopped', by: "a restart's create that failed or was undone; reconcile" },
  { from: 'creating', to: 'running', by: 'reconcile adopting a runtime container without a record' },
  { from: 'creating', to: 'paused', by: 'reconcile adopting a runtime container without a record' },
  { from: 'created', to: 'running', by: 'start' },
  { from: 'created', to: 'paused', by: 'runc pause from outside, found by refresh or reconcile' },
  { from: 'created', to: 'stopped', by: 'exit (kill, delete)' },
  { from: 'running', to: 'paused', by: 'pause' },
  { from: 'running', to: 'stopped', by: 'exit (kill, stop, delete --force)' },
  {
    from: 'paused',
    to: 'running',
    by: 'resume; kill and stop resume a paused container after signalling it',
  },
  { from: 'paused', to: 'stopped', by: 'exit (kill, stop, delete --force)' },
  {
    from: 'stopped',
    to: 'creating',
    by: 'restart (by the caller or the restart policy): a new runtime instance',
  },
];

export function isLegalTransition(from: ContainerStatus, to: ContainerStatus): boolean {
  return TRANSITIONS.some((transition) => transition.from === from && transition.to === to);
}

/** A status change the state machine does not have: a bug in runcd, never a caller's mistake (a 500). */
export class IllegalTransitionError extends Error {
  constructor(
    readonly containerId: string,
    readonly from: ContainerStatus,
    readonly to: ContainerStatus,
  ) {
    super(`illegal status transition of container "${containerId}": ${from} → ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

/**
 * The only writer of a container's status. Writing the status it already has is no change (a refresh that
 * finds what the view says); anything else must be in TRANSITIONS.
 */
export function setStatus(
  record: { readonly id: string; status: ContainerStatus },
  to: ContainerStatus,
): void {
  if (record.status === to) return;
  if (!isLegalTransition(record.status, to)) throw new IllegalTransitionError(record.id, record.status, to);
  record.status = to;
}

/** Both tables as the README shows them, between its `state-table` marker comments. */
export function renderStateTables(): string {
  const cell = (rule: Rule) => (rule === 'allowed' ? 'yes' : `\`${rule.code}\``);
  const lines = [
    `| operation | ${STATUSES.join(' | ')} |`,
    `| --- | ${STATUSES.map(() => '---').join(' | ')} |`,
    ...OPERATIONS.map(
      (operation) =>
        `| ${operation} | ${STATUSES.map((status) => cell(OPERATION_RULES[operation][status])).join(' | ')} |`,
    ),
    '',
    '| from | to | by |',
    '| --- | --- | --- |',
    ...TRANSITIONS.map(({ from, to, by }) => `| ${from} | ${to} | ${by} |`),
  ];
  return lines.join('\n');
}
