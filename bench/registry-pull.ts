/**
 * Pulling from a registry (issue 18): `node dist/bench/registry-pull.js [--iterations N] [--layers N]
 * [--layer-mib N] [--no-podman]` (defaults 5 iterations, 4 layers: busybox and N-1 of random bytes). One
 * Debian `docker-registry` on a loopback port serves one multi-layer image; four series, interleaved so a busy
 * machine slows each alike, each pulling the same image from scratch:
 *   runcd    POST /images/pull on runcd (in process): skopeo inspect + copy, layer checks, umoci unpack, the
 *            rootfs committed into a managed bundle; the image is deleted again after each pull;
 *   direct   `skopeo copy docker://... oci:DIR` + `umoci unpack`, as a shell script would: what no registry
 *            client built on those tools can avoid paying;
 *   podman   `podman pull` into a private storage root (only where podman is installed), `podman rmi` after;
 *   re-pull  POST /images/pull of the image runcd has (a manifest request, no download): the 50 ms target.
 * Prints medians, the ratios to direct, and the load average before and after. Everything lives in one /tmp
 * workspace and is removed at the end, even after a failure. No traffic leaves 127.0.0.1.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { openDaemon } from '../src/daemon.js';
import { CONMON, RUNC, which, Workspace } from './workspace.js';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

async function timed(step: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now();
  await step();
  return performance.now() - started;
}

function run(binary: string, ...args: string[]): void {
  execFileSync(binary, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function startRegistry(dir: string): Promise<{ host: string; child: ChildProcess }> {
  mkdirSync(join(dir, 'storage'), { recursive: true });
  const host = `127.0.0.1:${await freePort()}`;
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: ${host}\n`,
  );
  const child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      if ((await fetch(`http://${host}/v2/`)).status === 200) return { host, child };
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`docker-registry did not start on ${host}`);
}

/** busybox as layer one, then `layers - 1` layers of `mib` MiB of random bytes each, pushed as bench:1. */
function seedImage(workspace: Workspace, host: string, layers: number, mib: number): void {
  const bundle = workspace.bundle('busybox', ['true']);
  const layout = join(workspace.dir, 'layout');
  const unpacked = join(workspace.dir, 'unpacked');
  run('umoci', 'init', '--layout', layout);
  run('umoci', 'new', '--image', `${layout}:latest`);
  run('umoci', 'unpack', '--image', `${layout}:latest`, unpacked);
  run('cp', '-a', `${bundle}/rootfs/.`, join(unpacked, 'rootfs'));
  run('umoci', 'repack', '--image', `${layout}:latest`, unpacked);
  for (let layer = 1; layer < layers; layer++) {
    writeFileSync(join(unpacked, 'rootfs', `data-${layer}`), randomBytes(mib * 1024 * 1024));
    run('umoci', 'repack', '--image', `${layout}:latest`, unpacked);
  }
  run('umoci', 'config', '--image', `${layout}:latest`, '--config.cmd', 'true');
  run(
    'skopeo',
    '--insecure-policy',
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    `oci:${layout}:latest`,
    `docker://${host}/bench:1`,
  );
  rmSync(unpacked, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      iterations: { type: 'string' },
      layers: { type: 'string' },
      'layer-mib': { type: 'string' },
      'no-podman': { type: 'boolean', default: false },
    },
  });
  const iterations = Number(values.iterations ?? 5);
  const layers = Number(values.layers ?? 4);
  const mib = Number(values['layer-mib'] ?? 8);
  const podman = values['no-podman'] ? undefined : which('podman');
  const loadBefore = loadavg();
  const workspace = new Workspace();
  const registry = await startRegistry(workspace.path('registry'));
  const reference = `${registry.host}/bench:1`;
  const daemon = await openDaemon(
    {
      stateDir: workspace.path('state'),
      runtimeRoot: workspace.runcRoot('runcd'),
      bundleRoots: [workspace.bundleRoot],
      runtimeBinary: RUNC,
      conmonBinary: CONMON,
      insecureRegistries: [registry.host],
    },
    pino({ level: 'warn' }),
  );
  const times = {
    runcd: [] as number[],
    direct: [] as number[],
    podman: [] as number[],
    repull: [] as number[],
  };
  const pull = async () => {
    const answer = await daemon.app.inject({ method: 'POST', url: '/images/pull', payload: { reference } });
    const last = JSON.parse(answer.body.trim().split('\n').at(-1) ?? '{}') as {
      image?: { bundleId: string; downloaded: boolean };
      error?: string;
    };
    if (answer.statusCode !== 200 || !last.image)
      throw new Error(`pull: ${answer.statusCode} ${answer.body}`);
    return last.image;
  };
  try {
    seedImage(workspace, registry.host, layers, mib);
    for (let i = 0; i < iterations; i++) {
      let bundleId = '';
      times.runcd.push(await timed(async () => (bundleId = (await pull()).bundleId)));
      times.repull.push(
        await timed(async () => {
          if ((await pull()).downloaded) throw new Error('the re-pull downloaded the image again');
        }),
      );
      const removed = await daemon.app.inject({ method: 'DELETE', url: `/bundles/${bundleId}` });
      if (removed.statusCode !== 204)
        throw new Error(`delete ${bundleId}: ${removed.statusCode} ${removed.body}`);

      const direct = join(workspace.dir, `direct-${i}`);
      mkdirSync(direct);
      times.direct.push(
        await timed(() => {
          run(
            'skopeo',
            '--insecure-policy',
            'copy',
            '--quiet',
            '--src-tls-verify=false',
            `docker://${reference}`,
            `oci:${join(direct, 'oci')}:pulled`,
          );
          run(
            'umoci',
            '--log',
            'error',
            'unpack',
            '--image',
            `${join(direct, 'oci')}:pulled`,
            join(direct, 'bundle'),
          );
        }),
      );
      rmSync(direct, { recursive: true, force: true });

      if (podman) {
        const root = join(workspace.dir, 'podman-root');
        const runroot = join(workspace.dir, 'podman-run');
        const flags = ['--root', root, '--runroot', runroot, '--storage-driver', 'vfs'];
        times.podman.push(
          await timed(() => run(podman, ...flags, 'pull', '--quiet', '--tls-verify=false', reference)),
        );
        run(podman, ...flags, 'rmi', '--force', reference);
      }
    }
  } finally {
    await daemon.close();
    registry.child.kill('SIGKILL');
    try {
      execFileSync('sh', ['-c', `umount -R ${workspace.dir}/podman-root 2>/dev/null || true`]);
    } catch {
      // nothing mounted
    }
    await workspace.destroy();
  }
  const loadAfter = loadavg();
  const ms = (value: number) => `${value.toFixed(0)} ms`;
  const base = median(times.direct);
  console.log(
    `registry pull of ${layers} layers (busybox + ${layers - 1} x ${mib} MiB random) from a loopback registry, median of ${iterations}; ${cpus().length} CPUs, load average ${loadBefore.map((value) => value.toFixed(2)).join(' ')} before, ${loadAfter.map((value) => value.toFixed(2)).join(' ')} after`,
  );
  console.log('');
  console.log('| series | median | ratio to direct |');
  console.log('| --- | --- | --- |');
  console.log(`| skopeo copy + umoci unpack, direct | ${ms(base)} | 1.00x |`);
  console.log(
    `| runcd POST /images/pull | ${ms(median(times.runcd))} | ${(median(times.runcd) / base).toFixed(2)}x |`,
  );
  if (podman)
    console.log(
      `| podman pull (vfs) | ${ms(median(times.podman))} | ${(median(times.podman) / base).toFixed(2)}x |`,
    );
  else console.log('| podman pull | not installed | |');
  console.log(`| runcd re-pull of a present image | ${ms(median(times.repull))} | |`);
}

await main();
