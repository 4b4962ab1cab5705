import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { Bundle } from '../../src/schemas/bundle.js';
import { dockerCli } from './docker-cli.js';
import { makeBusyboxRootfs, tarball } from './rootfs.js';
import { DaemonProcess, makeSandbox, type Sandbox } from './sandbox.js';

export interface DockerSetup {
  sandbox: Sandbox;
  dockerSocket: string;
  daemon: DaemonProcess;
  run: (...args: string[]) => ReturnType<typeof dockerCli>;
  /** runcd killed (or stopped) and started again on the same state. */
  restart: (signal: NodeJS.Signals) => Promise<void>;
  imageRootfs: () => Promise<string>;
}

/**
 * A runcd child process with a Docker socket and a busybox image `bb` (its /etc/motd says "from the image"),
 * imported with the docker CLI; every container is removed at teardown.
 */
export async function withBusyboxImage(
  t: Test,
  name: string,
  extraArgs: string[] = [],
): Promise<DockerSetup> {
  const sandbox = makeSandbox(t, name);
  const dockerSocket = join(sandbox.dir, 'docker.sock');
  const setup = {
    sandbox,
    dockerSocket,
    daemon: new DaemonProcess(sandbox, ['--docker-socket', dockerSocket, ...extraArgs]),
  } as DockerSetup;
  t.teardown(() => setup.daemon.close());
  await setup.daemon.start();
  setup.run = (...args: string[]) => dockerCli(dockerSocket, ...args);
  setup.restart = async (signal) => {
    await setup.daemon.stop(signal);
    setup.daemon = new DaemonProcess(sandbox, ['--docker-socket', dockerSocket, ...extraArgs]);
    await setup.daemon.start();
  };
  setup.imageRootfs = async () => {
    const bundles = await setup.daemon.request<Bundle[]>('GET', '/bundles');
    const image = bundles.body.find((bundle) => bundle.privateTo === null);
    return join(image!.path, 'rootfs');
  };
  t.teardown(async () => {
    const ids = (await setup.run('ps', '-aq')).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await setup.run('rm', '-f', ...ids);
  });
  const rootfs = makeBusyboxRootfs(sandbox.dir);
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(join(rootfs, 'etc', 'motd'), 'from the image\n');
  const archive = join(sandbox.dir, 'bb.tar');
  writeFileSync(archive, tarball(rootfs));
  const imported = await setup.run('import', archive, 'bb');
  if (imported.code !== 0) throw new Error(imported.stderr);
  return setup;
}
