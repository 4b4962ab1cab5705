import { z } from 'zod';
import { ContainerNetworkFields, ContainerNetworkState } from './network.js';
import { ContainerId, QueryBoolean, SignalParam, UserParam } from './common.js';
import { TimeParam } from './time.js';
import { DEFAULT_DETACH_KEYS, parseDetachKeys } from '../detach-keys.js';

export const ContainerStatus = z
  .enum(['creating', 'created', 'running', 'paused', 'stopped'])
  .describe('OCI runtime status');
export type ContainerStatus = z.infer<typeof ContainerStatus>;

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$/;

export const Labels = z
  .record(
    z.string().regex(LABEL_KEY, 'label keys are 1-128 characters of A-Z a-z 0-9 _ . / -'),
    z.string().max(4096),
  )
  .refine((labels) => Object.keys(labels).length <= 64, 'at most 64 labels')
  .meta({ maxProperties: 64 })
  .describe('Free-form labels, filterable with ?label=key=value');

export const RestartPolicy = z
  .object({
    name: z
      .enum(['no', 'on-failure', 'always', 'unless-stopped'])
      .describe(
        "unless-stopped: as always (runcd never restarts a container its caller stopped, nor starts containers when it starts itself); kept under Docker's name for Docker's clients",
      ),
    maxRetries: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .optional()
      .describe('on-failure only: give up after this many'),
  })
  .strict()
  .describe('Applied by runcd when the container dies; never after a stop or kill requested by a caller')
  .meta({ id: 'RestartPolicy' });
export type RestartPolicy = z.infer<typeof RestartPolicy>;

export const Container = z
  .object({
    id: ContainerId,
    status: ContainerStatus,
    pid: z.number().int().describe('Init process pid on the host; 0 once stopped'),
    bundle: z.string(),
    rootfs: z.string(),
    created: z.string().describe('When runc create ran (RFC 3339)'),
    ociVersion: z.string().describe('OCI runtime-spec version of the runtime, as `runc state` reports it'),
    owner: z.string(),
    labels: z.record(z.string(), z.string()),
    exitCode: z
      .number()
      .int()
      .nullable()
      .describe('Exit status of the init process once stopped; 137 = SIGKILL'),
    oomKilled: z.boolean().describe('True when the kernel OOM killer ended the container'),
    startedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
    restartPolicy: RestartPolicy,
    restartCount: z.number().int().describe('Restarts performed by the restart policy'),
    stopSignal: z.string().describe('Signal `stop` sends first'),
    stopTimeout: z.number().int().describe('Seconds `stop` waits before SIGKILL'),
    autoRemove: z
      .boolean()
      .describe(
        'Deleted by runcd (with its delete event) once it stops and no restart follows, even across daemon restarts',
      ),
    network: ContainerNetworkState.optional(),
    monitor: z
      .enum(['ok', 'lost'])
      .describe(
        'lost: the container outlived its conmon monitor, so its exit code will never be known and its output is no longer logged; delete it (force) and create it again',
      ),
  })
  .meta({
    id: 'Container',
    example: {
      id: 'mycontainer',
      status: 'running',
      pid: 12345,
      bundle: '/var/lib/runcd/bundles/demo',
      rootfs: '/var/lib/runcd/bundles/demo/rootfs',
      created: '2026-11-28T10:30:00.000000000Z',
      ociVersion: '1.0.2-dev',
      owner: 'root',
      labels: { app: 'demo' },
      exitCode: null,
      oomKilled: false,
      startedAt: '2026-11-28T10:30:01.000Z',
      finishedAt: null,
      restartPolicy: { name: 'no' },
      restartCount: 0,
      stopSignal: 'SIGTERM',
      stopTimeout: 10,
      autoRemove: false,
      monitor: 'ok',
    },
  });
export type Container = z.infer<typeof Container>;

export const CreateContainerBody = z
  .object({
    id: ContainerId,
    bundle: z
      .string()
      .min(1)
      .max(4096)
      // The inspector refuses a relative path with its own code (bundle_path_relative); the document says so.
      .meta({ pattern: '^/' })
      .describe('Absolute path of an OCI bundle (config.json + rootfs) inside one of the bundle roots'),
    labels: Labels.optional(),
    start: z.boolean().optional().describe('Start right after create, as `runc run` does'),
    restartPolicy: RestartPolicy.optional(),
    stopSignal: SignalParam.optional().describe('Default signal for stop (default SIGTERM)'),
    stopTimeout: z
      .number()
      .int()
      .min(0)
      .max(3600)
      .optional()
      .describe('Default stop timeout in seconds (10)'),
    autoRemove: z
      .boolean()
      .optional()
      .describe(
        'Delete the container once it stops and its restart policy does not restart it, like docker run --rm (default false)',
      ),
    ...ContainerNetworkFields,
  })
  .strict()
  .meta({ example: { id: 'mycontainer', bundle: '/var/lib/runcd/bundles/demo', labels: { app: 'demo' } } });
export type CreateContainerBody = z.infer<typeof CreateContainerBody>;

const LabelFilter = z.string().regex(/^[^=]+=/, {
  error: (issue) => `label filter ${JSON.stringify(issue.input)} must be key=value`,
});

export const ListContainersQuery = z.object({
  status: ContainerStatus.optional(),
  label: z
    .union([LabelFilter, z.array(LabelFilter)])
    .optional()
    .transform((value): Array<[string, string]> => {
      const items = value === undefined ? [] : Array.isArray(value) ? value : [value];
      return items.map((item) => {
        const eq = item.indexOf('=');
        return [item.slice(0, eq), item.slice(eq + 1)];
      });
    })
    .describe('key=value; repeat to require several labels'),
});

export const DeleteContainerQuery = z.object({
  force: QueryBoolean.default(false).describe('Kill the container first if it is running or paused'),
});

export const KillContainerQuery = z.object({
  signal: SignalParam.prefault('SIGTERM'),
});

export const EnvEntry = z.string().regex(/^[^=\0]+=[^\0]*$/, 'env entries must be KEY=value');

/** An argv entry: execve takes C strings, so a NUL would make runc fail instead of the caller's request. */
export const ArgvEntry = z
  .string()
  .regex(/^[^\0]*$/, 'arguments cannot contain NUL')
  .max(65536);

export const ExecBody = z
  .object({
    args: z.array(ArgvEntry).min(1).max(1024).describe('Command and arguments, no shell involved'),
    env: z.array(EnvEntry).max(1024).optional().describe('Added to (and overriding) the container env'),
    cwd: z.string().regex(/^\//, 'cwd must be an absolute path').max(4096).optional(),
    user: UserParam.optional().describe("uid[:gid], 0-2147483647 each; default the container's user"),
    timeoutSeconds: z.number().positive().max(86400).optional().describe('Kill the process after this long'),
  })
  .strict()
  .meta({ example: { args: ['/bin/ps'], env: ['DEBUG=1'], timeoutSeconds: 30 } });
export type ExecBody = z.infer<typeof ExecBody>;

const oneOrMore = <T extends z.ZodType>(item: T) => z.union([item, z.array(item).min(1).max(1024)]);

/**
 * POST /containers/ID/exec/stdin: the process in the query (repeat `args` for each word), its stdin as the body,
 * so a script sends a file with `curl --data-binary @FILE` and gets ExecResult back in one plain request.
 */
export const ExecStdinQuery = z
  .object({
    args: oneOrMore(ArgvEntry).describe('Command and arguments, one `args` per word, no shell involved'),
    env: oneOrMore(EnvEntry).optional().describe('Added to (and overriding) the container env; repeatable'),
    cwd: z.string().regex(/^\//, 'cwd must be an absolute path').max(4096).optional(),
    user: UserParam.optional().describe("uid[:gid], 0-2147483647 each; default the container's user"),
    timeoutSeconds: z.coerce
      .number()
      .positive()
      .max(86400)
      .optional()
      .describe('Kill the process after this long'),
  })
  .strict();
export type ExecStdinQuery = z.infer<typeof ExecStdinQuery>;

/** The exec a stdin request asks for, in the shape every exec takes. */
export function execBodyOf(query: ExecStdinQuery): ExecBody {
  const list = <T>(value: T | T[]) => (Array.isArray(value) ? value : [value]);
  return {
    args: list(query.args),
    ...(query.env !== undefined ? { env: list(query.env) } : {}),
    ...(query.cwd !== undefined ? { cwd: query.cwd } : {}),
    ...(query.user !== undefined ? { user: query.user } : {}),
    ...(query.timeoutSeconds !== undefined ? { timeoutSeconds: query.timeoutSeconds } : {}),
  };
}

/** One key: a character other than the comma, or ctrl-X; comma-separated (detach-keys.ts reads them). */
const DETACH_KEY = '(?:[\\x00-+\\--\\x7f]|[cC][tT][rR][lL]-[a-zA-Z@\\[\\\\\\]^_])';
const DETACH_KEYS_PATTERN = new RegExp(`^(?:${DETACH_KEY}(?:,${DETACH_KEY})*)?$`);

/** Detach keys in Docker's syntax, as a query parameter (attach/session, exec/session). */
const DetachKeysParam = z
  .string()
  .max(64)
  // The syntax as a pattern, so the OpenAPI document states it (generated clients never send what gets a
  // 400); parseDetachKeys accepts exactly these, and the refinement stays as its guard.
  .regex(DETACH_KEYS_PATTERN, `Docker's detach-key syntax, e.g. ${DEFAULT_DETACH_KEYS}`)
  .superRefine((value, context) => {
    try {
      parseDetachKeys(value);
    } catch (error) {
      context.addIssue({ code: 'custom', message: (error as Error).message });
    }
  });

/**
 * GET /containers/ID/exec/session (a WebSocket): the process in the query as for exec/stdin, and whether it gets
 * a terminal and of which size. Checked before the upgrade, so a bad request is a plain HTTP 4xx.
 */
export const ExecSessionQuery = ExecStdinQuery.omit({ timeoutSeconds: true })
  .extend({
    tty: QueryBoolean.optional().describe('A terminal (runc exec -t): one output stream, resizable'),
    rows: z.coerce.number().int().min(1).max(1000).optional().describe("The terminal's rows at start"),
    cols: z.coerce.number().int().min(1).max(1000).optional().describe("The terminal's columns at start"),
    detachKeys: DetachKeysParam.optional().describe(
      `With a terminal, the keys that leave the process running (Docker's syntax, default ${DEFAULT_DETACH_KEYS})`,
    ),
  })
  .strict();
export type ExecSessionQuery = z.infer<typeof ExecSessionQuery>;

/** Control frames a session client sends as WebSocket text (bytes for stdin go as binary frames). */
export const SessionControl = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('resize'),
      rows: z.number().int().min(1).max(1000),
      cols: z.number().int().min(1).max(1000),
    })
    .strict(),
  z.object({ type: z.literal('eof') }).strict(),
]);
export type SessionControl = z.infer<typeof SessionControl>;

/**
 * GET /containers/ID/attach/session (a WebSocket): the detach keys in Docker's syntax, and optionally the
 * terminal's size to set on attaching (as the docker CLI resizes right after it attached).
 */
export const AttachSessionQuery = z
  .object({
    detachKeys: DetachKeysParam.optional().describe(
      `The keys that detach, Docker's syntax: comma-separated characters or ctrl-X (default ${DEFAULT_DETACH_KEYS})`,
    ),
    rows: z.coerce.number().int().min(1).max(1000).optional().describe("The terminal's rows (with cols)"),
    cols: z.coerce.number().int().min(1).max(1000).optional().describe("The terminal's columns (with rows)"),
  })
  .strict();
export type AttachSessionQuery = z.infer<typeof AttachSessionQuery>;

export const ExecResult = z
  .object({
    exitCode: z.number().int(),
    stdout: z.string(),
    stderr: z.string(),
    truncated: z.boolean().describe('True when stdout or stderr exceeded the output cap and was cut'),
    timedOut: z.boolean(),
  })
  .meta({ id: 'ExecResult' });
export type ExecResult = z.infer<typeof ExecResult>;

const TIMEOUT_SECONDS = z.coerce.number().int().min(-1).max(86400).describe('Seconds; -1 waits forever');

export const StopQuery = z.object({
  timeout: TIMEOUT_SECONDS.optional().describe(
    "Seconds to wait before SIGKILL (default: the container's, 10); -1 never escalates",
  ),
  signal: SignalParam.optional().describe("First signal (default: the container's stop signal, SIGTERM)"),
});

export const RestartQuery = z.object({
  timeout: TIMEOUT_SECONDS.optional().describe("Stop timeout before SIGKILL (default: the container's)"),
});

export const WaitQuery = z.object({
  condition: z.enum(['stopped', 'removed']).default('stopped'),
  timeout: z.coerce.number().positive().max(86400).optional().describe('Give up after this many seconds'),
});

export const WaitResult = z
  .object({
    exitCode: z.number().int().nullable(),
    oomKilled: z.boolean(),
    finishedAt: z.string().nullable(),
    timedOut: z
      .boolean()
      .describe('True when the timeout passed first; the other fields are then null/false'),
  })
  .meta({
    id: 'WaitResult',
    example: { exitCode: 137, oomKilled: false, finishedAt: '2026-11-28T10:31:00.000Z', timedOut: false },
  });
export type WaitResult = z.infer<typeof WaitResult>;

export const LogsQuery = z.object({
  follow: QueryBoolean.default(false).describe(
    'Keep streaming new lines; the stream ends when the container stops',
  ),
  tail: z.coerce.number().int().min(0).optional().describe('Only the last N lines'),
  since: TimeParam.optional(),
  until: TimeParam.optional(),
  timestamps: QueryBoolean.default(false).describe('Prefix each line with its RFC 3339 time'),
  stream: z.enum(['stdout', 'stderr', 'all']).default('all'),
});

export const LogLine = z
  .object({ time: z.string(), stream: z.enum(['stdout', 'stderr']), line: z.string() })
  .meta({ id: 'LogLine' });

export const ContainerProcess = z
  .object({
    pid: z.number().int(),
    ppid: z.number().int(),
    uid: z.number().int(),
    user: z.string(),
    state: z.string(),
    command: z.string().describe('Full command line'),
  })
  .meta({ id: 'ContainerProcess' });

export const ContainerStats = z
  .object({
    id: ContainerId,
    time: z.string(),
    cpu: z.object({
      usageNanoseconds: z.number(),
      userNanoseconds: z.number(),
      kernelNanoseconds: z.number(),
    }),
    memory: z.object({
      usageBytes: z.number(),
      limitBytes: z.number().nullable().describe('null when unlimited'),
      maxUsageBytes: z.number(),
    }),
    pids: z.object({ current: z.number(), limit: z.number().nullable().describe('null when unlimited') }),
  })
  .meta({ id: 'ContainerStats' });
export type ContainerStats = z.infer<typeof ContainerStats>;

export const StatsQuery = z.object({
  stream: QueryBoolean.default(false).describe(
    'NDJSON, one snapshot per interval, until the container stops',
  ),
  interval: z.coerce
    .number()
    .int()
    .min(1)
    .max(3600)
    .default(1)
    .describe('Seconds between snapshots when streaming'),
});
