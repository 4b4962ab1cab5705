import type { Readable } from 'node:stream';
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { components } from '../generated/runcd-api.js';
import type { Connection } from './connection.js';
import { CliError, EXIT_EXEC_FAILED, EXIT_FAILURE, connectionFailure, problemDetail } from './errors.js';
import { formatTable, RUNC_LIST_HEADER } from './table.js';
import { runTerminalSession, type TerminalIo } from './terminal-session.js';

/**
 * One function per command, each mirroring its runc namesake's arguments and output: silent on success where runc
 * is, runc's table for `list`, runc's indented JSON for `state`, the process's own exit code for `exec` and `run`.
 * Kept as one file like runc's own command list: the functions are short and share the argument parsing, and
 * side by side they show that runcctl answers as runc does.
 */

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  cwd: string;
  /** runcctl's stdin when it is a pipe or a file (a process's stdin for exec); undefined for a terminal. */
  stdin: () => Readable | undefined;
  /** Registers a handler for the signals `run` forwards to its container; returns the unregister function. */
  onSignal: (handler: (signal: NodeJS.Signals) => void) => () => void;
  /** The local terminal, for `exec -t`. */
  terminal: TerminalIo;
}

type Container = components['schemas']['Container'];
type EventType = components['schemas']['ContainerEvent']['type'];

export interface CommandContext {
  connection: Connection;
  io: Io;
}

export interface CommandSpec {
  usage: string;
  summary: string;
  run: (context: CommandContext, args: string[]) => Promise<number>;
}

/** Sends one request and returns its data, or throws the problem's detail (with `exitCode`) on failure. */
async function call<T>(
  connection: Connection,
  request: () => Promise<{ data?: T; error?: unknown; response: Response }>,
  exitCode = EXIT_FAILURE,
): Promise<T> {
  let result;
  try {
    result = await request();
  } catch (error) {
    throw connectionFailure(error, connection.host);
  }
  if (!result.response.ok) throw new CliError(problemDetail(result.error, result.response), exitCode);
  return result.data as T;
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  usage: string,
  positionals: { min: number; max: number },
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new CliError(`${(error as Error).message} (usage: runcctl ${usage})`);
  }
  const count = parsed.positionals.length;
  if (count < positionals.min || count > positionals.max) {
    const expected =
      positionals.min === positionals.max
        ? `exactly ${positionals.min}`
        : `${positionals.min} to ${positionals.max}`;
    throw new CliError(`"${usage.split(' ')[0]}" requires ${expected} argument(s) (usage: runcctl ${usage})`);
  }
  return parsed;
}

function labelsFrom(values: string[] | undefined): Record<string, string> | undefined {
  if (!values || values.length === 0) return undefined;
  const labels: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new CliError(`--label ${JSON.stringify(value)}: expected key=value`);
    labels[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return labels;
}

function wholeNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || value.trim() === '')
    throw new CliError(`${flag} ${value}: expected a number`);
  return parsed;
}

const list: CommandSpec = {
  usage: 'list [--format table|json] [-q]',
  summary: 'lists containers (runc list)',
  async run({ connection, io }, args) {
    const { values } = parse(
      args,
      { format: { type: 'string', short: 'f', default: 'table' }, quiet: { type: 'boolean', short: 'q' } },
      this.usage,
      { min: 0, max: 0 },
    );
    if (values.format !== 'table' && values.format !== 'json') {
      throw new CliError(`invalid format option "${values.format}": use table or json`);
    }
    const containers = await call<Container[]>(connection, () => connection.client.GET('/containers'));
    if (values.quiet) {
      for (const container of containers) io.stdout(`${container.id}\n`);
    } else if (values.format === 'json') {
      io.stdout(`${JSON.stringify(containers)}\n`);
    } else {
      const rows = containers.map((container) => [
        container.id,
        String(container.pid),
        container.status,
        container.bundle,
        container.created,
        container.owner,
      ]);
      io.stdout(formatTable([RUNC_LIST_HEADER, ...rows]));
    }
    return 0;
  },
};

const state: CommandSpec = {
  usage: 'state ID',
  summary: "prints a container's state as JSON (runc state)",
  async run({ connection, io }, args) {
    const [id] = parse(args, {}, this.usage, { min: 1, max: 1 }).positionals as [string];
    const container = await call<Container>(connection, () =>
      connection.client.GET('/containers/{id}', { params: { path: { id } } }),
    );
    io.stdout(`${JSON.stringify(container, null, 2)}\n`);
    return 0;
  },
};

const createOptions = {
  bundle: { type: 'string', short: 'b' },
  label: { type: 'string', short: 'l', multiple: true },
} as const;

const create: CommandSpec = {
  usage: 'create ID [--bundle DIR] [--label KEY=VALUE]...',
  summary: 'creates a container from a bundle (runc create; the bundle defaults to the current directory)',
  async run({ connection, io }, args) {
    const { values, positionals } = parse(args, createOptions, this.usage, { min: 1, max: 1 });
    await call(connection, () =>
      connection.client.POST('/containers', {
        body: {
          id: positionals[0]!,
          bundle: resolve(io.cwd, values.bundle ?? '.'),
          labels: labelsFrom(values.label),
        },
      }),
    );
    return 0;
  },
};

/** The commands that take one id, send one request and print nothing, as runc does. */
function simple(name: 'start' | 'pause' | 'resume', summary: string): CommandSpec {
  return {
    usage: `${name} ID`,
    summary,
    async run({ connection }, args) {
      const [id] = parse(args, {}, this.usage, { min: 1, max: 1 }).positionals as [string];
      const path = `/containers/{id}/${name}` as const;
      await call(connection, () => connection.client.POST(path, { params: { path: { id } } }));
      return 0;
    },
  };
}

const kill: CommandSpec = {
  usage: 'kill ID [SIGNAL]',
  summary: 'sends a signal to the container init, SIGTERM by default (runc kill)',
  async run({ connection }, args) {
    const [id, signal] = parse(args, {}, this.usage, { min: 1, max: 2 }).positionals as [string, string?];
    await call(connection, () =>
      connection.client.POST('/containers/{id}/kill', {
        params: { path: { id }, query: { signal: signal ?? 'SIGTERM' } },
      }),
    );
    return 0;
  },
};

const remove: CommandSpec = {
  usage: 'delete [--force] ID',
  summary: 'deletes a stopped container; --force kills it first (runc delete)',
  async run({ connection }, args) {
    const { values, positionals } = parse(args, { force: { type: 'boolean', short: 'f' } }, this.usage, {
      min: 1,
      max: 1,
    });
    await call(connection, () =>
      connection.client.DELETE('/containers/{id}', {
        params: { path: { id: positionals[0]! }, query: { force: values.force ? 'true' : 'false' } },
      }),
    );
    return 0;
  },
};

/** Options of exec that take a value, so the command can start at the first word after the id. */
const EXEC_VALUE_OPTIONS = new Set(['-e', '--env', '--cwd', '-u', '--user', '--timeout']);

/** `exec [OPTIONS] ID -- CMD...` or runc's own `exec [OPTIONS] ID CMD...`: options end where the command begins. */
export function splitExecArgs(args: string[]): { options: string[]; command: string[] } {
  const dashes = args.indexOf('--');
  if (dashes !== -1) return { options: args.slice(0, dashes), command: args.slice(dashes + 1) };
  let positionals = 0;
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (arg.startsWith('-') && arg !== '-') {
      if (EXEC_VALUE_OPTIONS.has(arg)) index++;
      continue;
    }
    positionals++;
    if (positionals === 2) return { options: args.slice(0, index), command: args.slice(index) };
  }
  return { options: args, command: [] };
}

const exec: CommandSpec = {
  usage:
    'exec [-t] [--env KEY=VALUE]... [--cwd DIR] [--user UID[:GID]] [--timeout SECONDS] ID -- CMD [ARG]...',
  summary: "runs a process in a running container; exits with the process's exit code (runc exec)",
  async run({ connection, io }, args) {
    const { options, command } = splitExecArgs(args);
    const { values, positionals } = parse(
      options,
      {
        env: { type: 'string', short: 'e', multiple: true },
        cwd: { type: 'string' },
        user: { type: 'string', short: 'u' },
        timeout: { type: 'string' },
        tty: { type: 'boolean', short: 't' },
      },
      this.usage,
      { min: 1, max: 1 },
    );
    if (command.length === 0) throw new CliError(`exec needs a command (usage: runcctl ${this.usage})`);
    if (values.tty) {
      if (values.timeout) throw new CliError('--timeout applies to exec without -t only');
      // As `runc exec -t`: a terminal for the process, the local one in raw mode, its size and resizes passed on.
      const query = new URLSearchParams({ tty: 'true' });
      for (const word of command) query.append('args', word);
      for (const entry of values.env ?? []) query.append('env', entry);
      if (values.cwd) query.set('cwd', values.cwd);
      if (values.user) query.set('user', values.user);
      const size = io.terminal.size();
      if (size) {
        query.set('rows', String(size.rows));
        query.set('cols', String(size.cols));
      }
      const path = `/containers/${encodeURIComponent(positionals[0]!)}/exec/session?${query}`;
      return runTerminalSession(connection.websocket(path), io.terminal);
    }
    const stdin = io.stdin();
    if (stdin) {
      // As `runc exec` passes its stdin: a pipe or file is the process's stdin, EOF included.
      const query = new URLSearchParams();
      for (const word of command) query.append('args', word);
      for (const entry of values.env ?? []) query.append('env', entry);
      if (values.cwd) query.set('cwd', values.cwd);
      if (values.user) query.set('user', values.user);
      if (values.timeout) query.set('timeoutSeconds', String(wholeNumber(values.timeout, '--timeout')));
      const path = `/containers/${encodeURIComponent(positionals[0]!)}/exec/stdin?${query}`;
      let answer;
      try {
        answer = await connection.upload(path, stdin, 'application/octet-stream');
      } catch (error) {
        throw connectionFailure(error, connection.host);
      }
      if (answer.status !== 200) {
        throw new CliError(
          problemDetail(answer.json, { status: answer.status, statusText: '' }),
          EXIT_EXEC_FAILED,
        );
      }
      return printExecResult(io, answer.json as ExecResult);
    }
    const result = await call(
      connection,
      () =>
        connection.client.POST('/containers/{id}/exec', {
          params: { path: { id: positionals[0]! } },
          body: {
            args: command,
            ...(values.env ? { env: values.env } : {}),
            ...(values.cwd ? { cwd: values.cwd } : {}),
            ...(values.user ? { user: values.user } : {}),
            ...(values.timeout ? { timeoutSeconds: wholeNumber(values.timeout, '--timeout') } : {}),
          },
        }),
      // runc exits 255 when exec itself fails (a stopped container, a missing program).
      EXIT_EXEC_FAILED,
    );
    return printExecResult(io, result);
  },
};

type ExecResult = components['schemas']['ExecResult'];

function printExecResult(io: Io, result: ExecResult): number {
  io.stdout(result.stdout);
  io.stderr(result.stderr);
  if (result.truncated) io.stderr('runcctl: output was truncated by runcd (1 MiB per stream)\n');
  if (result.timedOut) io.stderr('runcctl: the process was killed at its --timeout\n');
  return result.exitCode;
}

const run: CommandSpec = {
  usage: 'run ID [--bundle DIR] [--detach] [--keep] [--label KEY=VALUE]...',
  summary:
    'creates and starts a container; without --detach, prints its output, forwards SIGINT/SIGTERM, deletes it when it exits (unless --keep) and exits with its exit code (runc run)',
  async run(context, args) {
    const { connection, io } = context;
    const { values, positionals } = parse(
      args,
      { ...createOptions, detach: { type: 'boolean', short: 'd' }, keep: { type: 'boolean' } },
      this.usage,
      { min: 1, max: 1 },
    );
    const id = positionals[0]!;
    await call(connection, () =>
      connection.client.POST('/containers', {
        body: {
          id,
          bundle: resolve(io.cwd, values.bundle ?? '.'),
          labels: labelsFrom(values.label),
          start: true,
        },
      }),
    );
    if (values.detach) return 0;
    const forward = io.onSignal((signal) => {
      void connection.client
        .POST('/containers/{id}/kill', { params: { path: { id }, query: { signal } } })
        .catch(() => undefined);
    });
    try {
      await followLogs(context, id, { follow: true });
      const waited = await call(connection, () =>
        connection.client.POST('/containers/{id}/wait', {
          params: { path: { id }, query: { condition: 'stopped' } },
        }),
      );
      if (!values.keep) {
        await call(connection, () =>
          connection.client.DELETE('/containers/{id}', {
            params: { path: { id }, query: { force: 'true' } },
          }),
        );
      }
      return waited.exitCode ?? EXIT_FAILURE;
    } finally {
      forward();
    }
  },
};

const stop: CommandSpec = {
  usage: 'stop [--time SECONDS] [--signal SIGNAL] ID',
  summary: 'sends the stop signal, then SIGKILL after --time seconds (-1: never)',
  async run({ connection }, args) {
    const { values, positionals } = parse(
      args,
      { time: { type: 'string', short: 't' }, signal: { type: 'string', short: 's' } },
      this.usage,
      { min: 1, max: 1 },
    );
    const timeout = wholeNumber(values.time, '--time');
    await call(connection, () =>
      connection.client.POST('/containers/{id}/stop', {
        params: {
          path: { id: positionals[0]! },
          query: {
            ...(timeout !== undefined ? { timeout } : {}),
            ...(values.signal ? { signal: values.signal } : {}),
          },
        },
      }),
    );
    return 0;
  },
};

const restart: CommandSpec = {
  usage: 'restart [--time SECONDS] ID',
  summary: 'stops the container if needed, then creates and starts it again from the same bundle',
  async run({ connection }, args) {
    const { values, positionals } = parse(args, { time: { type: 'string', short: 't' } }, this.usage, {
      min: 1,
      max: 1,
    });
    const timeout = wholeNumber(values.time, '--time');
    await call(connection, () =>
      connection.client.POST('/containers/{id}/restart', {
        params: { path: { id: positionals[0]! }, query: timeout !== undefined ? { timeout } : {} },
      }),
    );
    return 0;
  },
};

const wait: CommandSpec = {
  usage: 'wait [--condition stopped|removed] [--timeout SECONDS] ID',
  summary: 'waits until the container stops (or is removed) and prints its exit code',
  async run({ connection, io }, args) {
    const { values, positionals } = parse(
      args,
      { condition: { type: 'string', default: 'stopped' }, timeout: { type: 'string' } },
      this.usage,
      { min: 1, max: 1 },
    );
    if (values.condition !== 'stopped' && values.condition !== 'removed') {
      throw new CliError(`--condition ${values.condition}: use stopped or removed`);
    }
    const timeout = wholeNumber(values.timeout, '--timeout');
    const result = await call(connection, () =>
      connection.client.POST('/containers/{id}/wait', {
        params: {
          path: { id: positionals[0]! },
          query: { condition: values.condition as 'stopped' | 'removed', ...(timeout ? { timeout } : {}) },
        },
      }),
    );
    if (result.timedOut)
      throw new CliError(`container "${positionals[0]!}" did not stop within ${timeout} s`);
    io.stdout(`${result.exitCode ?? ''}\n`);
    return 0;
  },
};

/** Streams a container's log to stdout and stderr (each line to the stream it came from) until it ends. */
async function followLogs(
  { connection, io }: CommandContext,
  id: string,
  options: { follow: boolean; tail?: number | undefined; timestamps?: boolean | undefined },
): Promise<void> {
  const stream = await call(connection, () =>
    connection.client.GET('/containers/{id}/logs', {
      params: {
        path: { id },
        query: {
          follow: options.follow ? 'true' : 'false',
          ...(options.tail !== undefined ? { tail: options.tail } : {}),
        },
      },
      headers: { accept: 'application/x-ndjson' },
      parseAs: 'stream',
    }),
  );
  await forEachLine(stream, connection.host, (line) => {
    const entry = JSON.parse(line) as components['schemas']['LogLine'];
    const text = options.timestamps ? `${entry.time} ${entry.line}\n` : `${entry.line}\n`;
    if (entry.stream === 'stderr') io.stderr(text);
    else io.stdout(text);
  });
}

async function forEachLine(
  stream: ReadableStream<Uint8Array> | null,
  host: string,
  onLine: (line: string) => void,
): Promise<void> {
  if (!stream) return;
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let newline;
      while ((newline = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line !== '') onLine(line);
      }
    }
  } catch (error) {
    throw connectionFailure(error, host);
  }
  if (buffer !== '') onLine(buffer);
}

const logs: CommandSpec = {
  usage: 'logs [--follow] [--tail N] [--timestamps] ID',
  summary: "prints the container's output (stdout to stdout, stderr to stderr); --follow until it stops",
  async run(context, args) {
    const { values, positionals } = parse(
      args,
      {
        follow: { type: 'boolean', short: 'f' },
        tail: { type: 'string', short: 'n' },
        timestamps: { type: 'boolean', short: 't' },
      },
      this.usage,
      { min: 1, max: 1 },
    );
    await followLogs(context, positionals[0]!, {
      follow: values.follow ?? false,
      tail: wholeNumber(values.tail, '--tail'),
      timestamps: values.timestamps,
    });
    return 0;
  },
};

const events: CommandSpec = {
  usage: 'events [--since TIME] [--until TIME] [--type TYPE]... [ID]...',
  summary:
    'prints lifecycle events as JSON lines: stored ones from --since, then live ones until --until or Ctrl-C',
  async run({ connection, io }, args) {
    const { values, positionals } = parse(
      args,
      { since: { type: 'string' }, until: { type: 'string' }, type: { type: 'string', multiple: true } },
      this.usage,
      { min: 0, max: 64 },
    );
    const stream = await call(connection, () =>
      connection.client.GET('/events', {
        params: {
          query: {
            ...(values.since ? { since: values.since } : {}),
            ...(values.until ? { until: values.until } : {}),
            ...(positionals.length > 0 ? { id: positionals } : {}),
            ...(values.type ? { type: values.type as EventType[] } : {}),
          },
        },
        parseAs: 'stream',
      }),
    );
    await forEachLine(stream, connection.host, (line) => io.stdout(`${line}\n`));
    return 0;
  },
};

const ps: CommandSpec = {
  usage: 'ps [--format table|json] ID',
  summary: 'lists the processes in a container (runc ps)',
  async run({ connection, io }, args) {
    const { values, positionals } = parse(
      args,
      { format: { type: 'string', short: 'f', default: 'table' } },
      this.usage,
      { min: 1, max: 1 },
    );
    const processes = await call(connection, () =>
      connection.client.GET('/containers/{id}/processes', { params: { path: { id: positionals[0]! } } }),
    );
    if (values.format === 'json') io.stdout(`${JSON.stringify(processes)}\n`);
    else {
      const rows = processes.map((process) => [
        process.user,
        String(process.pid),
        String(process.ppid),
        process.state,
        process.command,
      ]);
      io.stdout(formatTable([['USER', 'PID', 'PPID', 'STATE', 'CMD'], ...rows]));
    }
    return 0;
  },
};

const attach: CommandSpec = {
  usage: 'attach [--detach-keys KEYS] ID',
  summary:
    "attaches the local terminal to a container's own process; ctrl-p ctrl-q detaches, the container goes on (docker attach)",
  async run({ connection, io }, args) {
    const { values, positionals } = parse(args, { 'detach-keys': { type: 'string' } }, this.usage, {
      min: 1,
      max: 1,
    });
    // The keys are runcd's to watch for (it knows Docker's syntax and refuses a sequence it cannot read).
    const query = new URLSearchParams();
    if (values['detach-keys'] !== undefined) query.set('detachKeys', values['detach-keys']);
    // As the docker CLI: the container's terminal takes this window's size on attaching, and follows it.
    const size = io.terminal.size();
    if (size) {
      query.set('rows', String(size.rows));
      query.set('cols', String(size.cols));
    }
    const path = `/containers/${encodeURIComponent(positionals[0]!)}/attach/session?${query}`;
    return runTerminalSession(connection.websocket(path), io.terminal, EXIT_FAILURE);
  },
};

export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  list,
  state,
  create,
  start: simple('start', 'starts a created container (runc start)'),
  run,
  exec,
  attach,
  kill,
  delete: remove,
  stop,
  restart,
  wait,
  logs,
  events,
  pause: simple('pause', 'freezes every process of the container (runc pause)'),
  resume: simple('resume', 'thaws a paused container (runc resume)'),
  ps,
};
