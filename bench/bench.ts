/**
 * runcd's benchmark harness (issue 6): `npm run bench` (full run, several minutes) or `npm run bench -- --smoke`
 * (a few iterations, for CI). Starts its own runcd processes on temporary sockets and runc roots under /tmp,
 * drives them with undici over the unix socket, compares with the runc CLI (and Podman's REST service when
 * `podman` is installed), prints a markdown report and writes it with a JSON file to bench/results/.
 *
 * Exits non-zero on any error or leftover (a container in one of its runc roots, a live conmon of its own,
 * anything runcd logged at error level), never because of a timing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BUNDLE_ARGS, type BundleKind, type LifecycleDriver } from './drivers.js';
import { benchInteractive } from './interactive.js';
import { benchLifecycle } from './lifecycle.js';
import { PodmanDriver, PodmanService } from './podman-driver.js';
import { renderMarkdown, type Section } from './report.js';
import { RuncCliDriver } from './runc-driver.js';
import { RuncdDaemon, RuncdDriver } from './runcd-driver.js';
import { benchScale } from './scale.js';
import { benchThroughput } from './throughput.js';
import { CONMON, listRuncIds, REPO_ROOT, RUNC, which, Workspace } from './workspace.js';

const USAGE = `usage: npm run bench -- [flags]
  --smoke              a few iterations of everything (what CI runs); fails only on errors and leftovers
  --only LIST          comma-separated subset of B1,B2,B3,B4,B5,B6,B7 (B1+B2, and B3+B5+B6, run together)
  --iterations N       B1/B2 lifecycles per front end (default 40)
  --containers LIST    B3/B5 container counts (default 10,100,1000)
  --clients N          B4 concurrent clients (default 50)
  --lifecycles N       B4 lifecycles per round (default 200)
  --rounds N           B4 rounds per front end (default 3)
  --kills N            B3/B6 host kills of each kind (default 20)
  --idle-seconds N     B5 idle CPU window (default 10)
  --keystrokes N       B7 keystrokes per front end and round (default 100, 4 rounds)
  --output-mib N       B7 output per run in MiB (default 200, 3 runs per front end)
  --no-podman          skip Podman even when it is installed
  --cpu-prof           run each runcd under node --cpu-prof (profiles next to the results)
  --baseline DIR       B1/B2 also drive a second runcd built in checkout DIR (its bin/runcd.js), interleaved,
                       as "runcd-baseline": how an optimization is measured on a busy machine
  --out DIR            where the .md and .json go (default bench/results)`;

interface Options {
  smoke: boolean;
  only: Set<string>;
  iterations: number;
  warmup: number;
  levels: number[];
  reads: number;
  lists: number;
  clients: number;
  lifecycles: number;
  rounds: number;
  kills: number;
  idleSeconds: number;
  keystrokes: number;
  outputMiB: number;
  podman: boolean;
  cpuProf: boolean;
  baseline: string | undefined;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      smoke: { type: 'boolean', default: false },
      only: { type: 'string' },
      iterations: { type: 'string' },
      containers: { type: 'string' },
      clients: { type: 'string' },
      lifecycles: { type: 'string' },
      rounds: { type: 'string' },
      kills: { type: 'string' },
      'idle-seconds': { type: 'string' },
      keystrokes: { type: 'string' },
      'output-mib': { type: 'string' },
      'no-podman': { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      baseline: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const smoke = values.smoke;
  const number = (value: string | undefined, fallback: number, smokeValue: number) => {
    if (value === undefined) return smoke ? smokeValue : fallback;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 1)
      throw new Error(`expected a positive integer, got "${value}"`);
    return parsed;
  };
  const levels = (values.containers ?? (smoke ? '10' : '10,100,1000'))
    .split(',')
    .map((level) => number(level, 0, 0));
  return {
    smoke,
    only: new Set((values.only ?? 'B1,B2,B3,B4,B5,B6,B7').toUpperCase().split(',')),
    iterations: number(values.iterations, 40, 3),
    warmup: smoke ? 1 : 3,
    levels,
    reads: smoke ? 20 : 500,
    lists: smoke ? 5 : 50,
    clients: number(values.clients, 50, 5),
    lifecycles: number(values.lifecycles, 200, 10),
    rounds: number(values.rounds, 3, 1),
    kills: number(values.kills, 20, 2),
    idleSeconds: number(values['idle-seconds'], 10, 1),
    keystrokes: number(values.keystrokes, 100, 10),
    outputMiB: number(values['output-mib'], 200, 20),
    // Podman takes a while to set up and CI does not install it: the smoke run leaves it out.
    podman: !values['no-podman'] && !smoke && which('podman') !== undefined,
    cpuProf: values['cpu-prof'],
    baseline: values.baseline,
    out: values.out ?? join(REPO_ROOT, 'bench', 'results'),
  };
}

const wants = (options: Options, ...ids: string[]) => ids.some((id) => options.only.has(id));

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  mkdirSync(options.out, { recursive: true });
  const nodeArgs = options.cpuProf
    ? ['--cpu-prof', `--cpu-prof-dir=${join(options.out, `profiles-${stamp}`)}`]
    : [];
  const workspace = new Workspace();
  const sections: Section[] = [];
  const errors: string[] = [];
  const leftovers: string[] = [];
  const notes: string[] = [];
  const daemons: RuncdDaemon[] = [];
  let podman: PodmanService | undefined;
  const loadBefore = loadavg();

  const cleanUp = async () => {
    for (const daemon of daemons) await daemon.stop().catch(() => undefined);
    await podman?.stop().catch(() => undefined);
  };
  const interrupted = (signal: NodeJS.Signals) => {
    console.error(`bench: ${signal}, cleaning up ${workspace.dir}`);
    void cleanUp()
      .then(() => workspace.destroy())
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  const startDaemon = async (name: string, runtime?: string, checkout?: string, flags?: string[]) => {
    const daemon = new RuncdDaemon(workspace, name, { runtime, nodeArgs, checkout, flags });
    daemons.push(daemon);
    await daemon.start();
    return daemon;
  };
  /** runcd's leftovers: containers it still lists, containers in its runc root, errors it logged. */
  const runcdLeftovers = async (daemon: RuncdDaemon) => {
    const found: string[] = [];
    const listed = JSON.parse(await daemon.expect('GET', '/containers', 200)) as Array<{ id: string }>;
    for (const container of listed) found.push(`runcd ${daemon.name} still lists ${container.id}`);
    for (const id of await listRuncIds(daemon.runtimeRoot)) {
      found.push(`runc root of runcd ${daemon.name}: ${id}`);
    }
    for (const monitor of workspace.describeLiveMonitors(daemon.dir))
      found.push(`live conmon of runcd: ${monitor}`);
    return found;
  };
  const phase = async (name: string, run: () => Promise<void>) => {
    const started = performance.now();
    try {
      await run();
    } catch (error) {
      errors.push(`${name}: ${(error as Error).stack ?? String(error)}`);
    }
    console.error(`bench: ${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  };

  try {
    const bundles = {
      sleep: workspace.bundle('sleep', BUNDLE_ARGS.sleep),
      graceful: workspace.bundle('graceful', BUNDLE_ARGS.graceful),
    } satisfies Record<BundleKind, string>;

    if (options.podman) {
      podman = new PodmanService(workspace);
      try {
        await podman.start(bundles.sleep);
      } catch (error) {
        notes.push(`Podman is installed but could not be used: ${(error as Error).message}`);
        await podman.stop().catch(() => undefined);
        podman = undefined;
      }
    } else if (!options.smoke) {
      notes.push(
        which('podman')
          ? 'Podman skipped (--no-podman).'
          : 'Podman is not installed: its columns are left out.',
      );
    }

    if (wants(options, 'B1', 'B2')) {
      await phase('B1/B2', async () => {
        const daemon = await startDaemon('lifecycle');
        const drivers: LifecycleDriver[] = [
          new RuncdDriver(daemon, bundles),
          new RuncCliDriver(workspace, bundles),
        ];
        if (podman) drivers.push(new PodmanDriver(podman));
        const checks = [() => runcdLeftovers(daemon)];
        if (options.baseline) {
          const baseline = await startDaemon('baseline', undefined, options.baseline);
          drivers.push(new RuncdDriver(baseline, bundles, 'runcd-baseline'));
          checks.push(() => runcdLeftovers(baseline));
          notes.push(`runcd-baseline is the runcd built in ${options.baseline}.`);
        }
        const { b1, b2 } = await benchLifecycle(drivers, {
          iterations: options.iterations,
          warmup: options.warmup,
        });
        sections.push(b1, b2);
        for (const check of checks) leftovers.push(...(await check()));
        if (podman) leftovers.push(...(await podman.containers()).map((name) => `podman still has ${name}`));
      });
    }

    if (wants(options, 'B3', 'B5', 'B6')) {
      await phase('B3/B5/B6', async () => {
        const counting = workspace.countingRuntime();
        const daemon = await startDaemon('scale', counting.binary);
        const { b3, b5, b6 } = await benchScale(daemon, bundles.sleep, counting.count, {
          levels: options.levels,
          reads: options.reads,
          lists: options.lists,
          kills: options.kills,
          idleSeconds: options.idleSeconds,
          createConcurrency: 8,
        });
        sections.push(b3, b5, b6);
        leftovers.push(...(await runcdLeftovers(daemon)));
      });
    }

    if (wants(options, 'B4')) {
      await phase('B4', async () => {
        // The same concurrency as raw runc: runcd's cap on runtime processes at once (8 by default, a bound on
        // what a burst of requests can fork) raised to the number of clients, as raw runc has no cap at all.
        const cap = String(options.clients);
        const daemon = await startDaemon('throughput', undefined, undefined, [
          '--max-runtime-processes',
          cap,
        ]);
        notes.push(
          `B4 runs its runcd with --max-runtime-processes ${cap} (the number of clients; the default is 8), so both front ends fork up to ${cap} runtime processes at once.`,
        );
        const raw = new RuncCliDriver(workspace, bundles, 'runc-throughput');
        const result = await benchThroughput(
          [
            { driver: new RuncdDriver(daemon, bundles), leftovers: () => runcdLeftovers(daemon) },
            {
              driver: raw,
              leftovers: async () =>
                (await listRuncIds(raw.root)).map((id) => `runc root ${raw.root}: ${id}`),
            },
          ],
          { clients: options.clients, lifecycles: options.lifecycles, rounds: options.rounds },
        );
        sections.push(result.section);
        errors.push(...result.errors);
        leftovers.push(...result.leftovers);
      });
    }

    if (wants(options, 'B7')) {
      await phase('B7', async () => {
        const dockerSocket = join(workspace.path('b7'), 'docker.sock');
        const daemon = await startDaemon('interactive', undefined, undefined, [
          '--docker-socket',
          dockerSocket,
        ]);
        sections.push(
          await benchInteractive(daemon, dockerSocket, bundles.sleep, {
            keystrokes: options.keystrokes,
            rounds: options.smoke ? 2 : 4,
            throughputBytes: options.outputMiB * 1024 * 1024,
            throughputRounds: options.smoke ? 1 : 3,
          }),
        );
        leftovers.push(...(await runcdLeftovers(daemon)));
        // A session whose client left ends at its SIGHUP: give the last one a moment to be gone.
        const sessions = join(daemon.stateDir, 'sessions');
        const present = () => (existsSync(sessions) ? readdirSync(sessions) : []);
        for (let waited = 0; present().length > 0 && waited < 10_000; waited += 100) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        for (const entry of present()) {
          leftovers.push(`B7 session directory left: ${entry}`);
        }
      });
    }

    for (const daemon of daemons) {
      await daemon.stop();
      for (const line of daemon.logOutput().split('\n')) {
        // pino levels: 50 error, 60 fatal
        if (/"level":(50|60)/.test(line)) errors.push(`runcd ${daemon.name} logged: ${line}`);
      }
    }
    if (podman) {
      await podman.stop();
      // Podman 4.3 leaves the conmon of every attached exec session running after its container is gone: that is
      // Podman's doing, not a leftover of runcd or of the bench (the workspace cleanup kills them).
      const lingering = workspace.liveMonitors(podman.dir).length;
      if (lingering > 0) {
        notes.push(
          `Podman left ${lingering} exec-session conmon processes running; the bench's cleanup killed them.`,
        );
      }
      podman = undefined;
    }
    errors.push(...missingFigures(options, sections));
    leftovers.push(...(await workspace.leftoverContainers()).map((entry) => `runc container left: ${entry}`));
    for (const daemon of daemons) {
      leftovers.push(
        ...workspace.describeLiveMonitors(daemon.dir).map((monitor) => `live conmon left: ${monitor}`),
      );
    }
  } finally {
    await cleanUp();
    await workspace.destroy();
  }

  const meta = {
    date: new Date().toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    commit:
      git('rev-parse', '--short', 'HEAD') +
      (git('status', '--porcelain', '--untracked-files=no') ? '+dirty' : ''),
    node: process.version,
    runc: firstLine(RUNC, '--version'),
    conmon: firstLine(CONMON, '--version'),
    podman: options.podman ? firstLine('podman', '--version') : null,
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    loadBefore: loadBefore.map((value) => value.toFixed(2)).join(' '),
    loadAfter: loadavg()
      .map((value) => value.toFixed(2))
      .join(' '),
  };
  const markdown = renderMarkdown(sections, [
    `Run of \`${meta.command}\` at ${meta.date} (commit ${meta.commit}).`,
    `${meta.cpus}; Node ${meta.node}; ${meta.runc}; ${meta.conmon}${meta.podman ? `; ${meta.podman}` : ''}.`,
    `Load average (1/5/15 min) before: ${meta.loadBefore}, after: ${meta.loadAfter}.`,
    ...notes.map((note) => `\n${note}`),
  ]);
  const base = join(options.out, `bench-${stamp}${options.smoke ? '-smoke' : ''}`);
  writeFileSync(`${base}.md`, markdown + '\n');
  writeFileSync(
    `${base}.json`,
    JSON.stringify(
      { meta, options: { ...options, only: [...options.only] }, sections, errors, leftovers },
      null,
      2,
    ) + '\n',
  );
  console.log(markdown);
  console.log(`\nwritten: ${base}.md, ${base}.json`);
  for (const error of errors) console.error(`bench error: ${error}`);
  for (const leftover of leftovers) console.error(`bench leftover: ${leftover}`);
  if (errors.length > 0 || leftovers.length > 0) {
    console.error(`bench: FAILED with ${errors.length} error(s) and ${leftovers.length} leftover(s)`);
    return 1;
  }
  return 0;
}

/**
 * What makes a run count (the smoke run in CI included): every benchmark asked for produced its table, and every
 * target has a figure. Whether a figure meets its bound is reported, never failed on.
 */
function missingFigures(options: Options, sections: readonly Section[]): string[] {
  const problems: string[] = [];
  for (const id of ['B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7'].filter((entry) => options.only.has(entry))) {
    const found = sections.find((entry) => entry.id === id);
    if (!found || found.rows.length === 0) problems.push(`${id} produced no figures`);
  }
  for (const entry of sections) {
    for (const target of entry.targets) {
      if (!/\d/.test(target.figure) || target.figure.includes('n/a')) {
        problems.push(`${entry.id} "${target.name}" has no figure (${target.figure})`);
      }
    }
  }
  return problems;
}

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    return 'unknown';
  }
}

function firstLine(binary: string, ...args: string[]): string {
  try {
    return execFileSync(binary, args, { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .split('\n')[0]!
      .trim();
  } catch {
    return `${binary} (version unknown)`;
  }
}

process.exitCode = await main().catch((error: unknown) => {
  console.error(`bench: ${(error as Error).stack ?? String(error)}`);
  return 1;
});
