import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { dockerCli, startWithDockerSocket } from '../helpers/docker-cli.js';
import { buildOciLayout } from '../helpers/image-archive.js';
import { postAndReadFirst, postForLines } from '../helpers/ndjson.js';
import { seed, startRegistry } from '../helpers/registry.js';
import {
  addRandomLayer,
  addWhiteoutLayer,
  otherPlatformLayout,
  processesMentioning,
  seedAll,
  startRegistryProxy,
} from '../helpers/registry-proxy.js';
import { makeBusyboxRootfs } from '../helpers/rootfs.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

const HOST_ARCHITECTURE = process.arch === 'x64' ? 'amd64' : process.arch;

/** The skopeo copies the audit log recorded for pulls (both APIs) of references that contain `needle`. */
function auditedCopies(stateDir: string, needle: string): number {
  return readFileSync(join(stateDir, 'audit.log'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { runtime?: Array<{ argv: string[] }> })
    .flatMap((entry) => entry.runtime ?? [])
    .filter((call) => /skopeo/.test(call.argv[0]!) && call.argv.includes('copy'))
    .filter((call) => call.argv.some((arg) => arg.startsWith('docker://') && arg.includes(needle))).length;
}

const scratchLeft = (bundleRoot: string) => readdirSync(bundleRoot).filter((name) => name.startsWith('.'));

t.test(
  'native pull: NDJSON layer progress with bytes, re-pull, single-flight, cancel, platform, layer quota, errors',
  async (t) => {
    const sandbox = makeSandbox(t, 'npull');
    const registry = await startRegistry(t, join(sandbox.dir, 'registry'));
    const proxy = await startRegistryProxy(t, registry.host);
    const rootfs = makeBusyboxRootfs(sandbox.dir);
    mkdirSync(join(rootfs, 'etc'), { recursive: true });
    writeFileSync(join(rootfs, 'etc', 'motd-one'), 'from layer one\n');
    const image = (name: string) => {
      const work = join(sandbox.dir, name);
      mkdirSync(work);
      return {
        work,
        layout: buildOciLayout(work, rootfs, {
          cmd: ['sh', '-c', 'cat /etc/layer2 2>/dev/null; ls /etc/motd-one >/dev/null 2>&1 || echo gone'],
        }),
      };
    };
    const multi = image('multi');
    addWhiteoutLayer(multi.layout, multi.work);
    seed(registry, multi.layout, 'multi:1');
    const shared = image('shared');
    addRandomLayer(shared.layout, shared.work, 256 * 1024);
    seed(registry, shared.layout, 'shared:1');
    seed(registry, shared.layout, 'shared:2');
    const cancel = image('cancel');
    addRandomLayer(cancel.layout, cancel.work, 256 * 1024);
    seed(registry, cancel.layout, 'cancel:1');
    const big = image('big');
    addRandomLayer(big.layout, big.work, 3 * 1024 * 1024);
    seed(registry, big.layout, 'big:1');
    const otherArchitecture = HOST_ARCHITECTURE === 'amd64' ? 'arm64' : 'amd64';
    seedAll(registry.host, otherPlatformLayout(join(sandbox.dir, 'other'), otherArchitecture), 'other:1');

    const { dockerSocket } = await startWithDockerSocket(t, sandbox, [
      '--insecure-registry',
      proxy.host,
      '--max-layer-bytes',
      '2M',
    ]);
    const pull = (reference: string, extra: Record<string, unknown> = {}) =>
      postForLines(sandbox.socket, '/images/pull', { reference, ...extra });

    // Slow blobs (32 KiB every 50 ms): the copy takes seconds, and the byte counts show it.
    proxy.throttle(32 * 1024, 50);
    const pulled = await pull(`${proxy.host}/multi:1`);
    proxy.throttle(0, 0);
    t.equal(pulled.status, 200, JSON.stringify(pulled.body));
    t.match(pulled.contentType, /^application\/x-ndjson/);
    const statuses = pulled.lines.map((line) => line.status);
    t.equal(statuses[0], 'Pulling from multi', 'the stream starts as Docker words it');
    t.equal(statuses.filter((status) => status === 'Pulling fs layer').length, 2, 'two layers announced');
    const downloading = pulled.lines.filter((line) => line.status === 'Downloading');
    t.ok(downloading.length > 0, 'layer progress while the copy runs');
    t.ok(
      downloading.every((line) => {
        const detail = line.progressDetail as { current: number; total: number };
        return detail.current > 0 && detail.current <= detail.total && typeof line.progress === 'string';
      }),
      'each progress line has bytes so far and in all, and a progress bar',
      { downloading },
    );
    t.equal(statuses.filter((status) => status === 'Pull complete').length, 2);
    const result = pulled.lines.at(-1)!.image as { name: string; bundleId: string; downloaded: boolean };
    t.equal(result.name, `${proxy.host}/multi:1`);
    t.equal(result.downloaded, true);
    const ran = await dockerCli(dockerSocket, 'run', '--rm', `${proxy.host}/multi:1`);
    t.equal(ran.stdout, 'from layer two\ngone\n', 'the pulled image runs, whiteout applied');

    const blobsBefore = proxy.blobGetCount();
    const again = await pull(`${proxy.host}/multi:1`);
    t.equal(again.status, 200);
    t.ok(again.lines.some((line) => line.status === `Status: Image is up to date for ${proxy.host}/multi:1`));
    t.equal((again.lines.at(-1)!.image as { downloaded: boolean }).downloaded, false);
    t.equal(proxy.blobGetCount(), blobsBefore, 'a second pull of a tag downloads no blob');

    // The Docker API's pull reports the same byte counts.
    proxy.throttle(32 * 1024, 50);
    const dockerPull = await postForLines(
      dockerSocket,
      `/v1.50/images/create?fromImage=${encodeURIComponent(`${proxy.host}/cancel`)}&tag=1`,
      undefined,
    );
    proxy.throttle(0, 0);
    t.equal(dockerPull.status, 200);
    t.ok(
      dockerPull.lines.some(
        (line) =>
          line.status === 'Downloading' &&
          ((line.progressDetail as { current?: number }).current ?? 0) > 0 &&
          ((line.progressDetail as { total?: number }).total ?? 0) > 0,
      ),
      "docker pull's stream has Downloading with progressDetail bytes",
    );
    t.equal((await dockerCli(dockerSocket, 'rmi', `${proxy.host}/cancel:1`)).code, 0);

    // Single-flight: three pulls of one digest (two APIs, two tags) while its blobs are held.
    const before = new Map(proxy.blobGets);
    const countBefore = proxy.blobGetCount();
    proxy.hold();
    const first = pull(`${proxy.host}/shared:1`);
    await eventually(async () => (proxy.blobGetCount() > countBefore ? true : undefined), 30_000);
    const second = postForLines(
      dockerSocket,
      `/v1.50/images/create?fromImage=${encodeURIComponent(`${proxy.host}/shared`)}&tag=1`,
      undefined,
    );
    const third = pull(`${proxy.host}/shared:2`);
    await eventually(
      async () =>
        (proxy.manifestRequests.get('shared:1') ?? 0) >= 2 &&
        (proxy.manifestRequests.get('shared:2') ?? 0) >= 1
          ? true
          : undefined,
      30_000,
    );
    // Their manifest inspections are over: the later two are waiting for the first.
    await eventually(
      async () => (processesMentioning('inspect', `${proxy.host}/shared`).length === 0 ? true : undefined),
      30_000,
    );
    proxy.release();
    const answers = await Promise.all([first, second, third]);
    t.same(
      answers.map((answer) => answer.status),
      [200, 200, 200],
    );
    t.notOk(
      answers.some((answer) => answer.lines.some((line) => line.error !== undefined)),
      'no pull failed',
    );
    const grown = [...proxy.blobGets].filter(([digest, count]) => count > (before.get(digest) ?? 0));
    t.ok(grown.length > 0);
    t.ok(
      grown.every(([digest, count]) => count === (before.get(digest) ?? 0) + 1),
      'each blob was downloaded once for the three pulls',
      { grown },
    );
    t.equal(
      await eventually(async () => {
        const copies = auditedCopies(sandbox.stateDir, `${proxy.host}/shared`);
        return copies > 0 ? copies : undefined;
      }),
      1,
      'one skopeo copy served all three',
    );
    t.equal((answers[2]!.lines.at(-1)!.image as { downloaded: boolean }).downloaded, false);
    const listed = await dockerCli(dockerSocket, 'images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}');
    const ids = listed.stdout
      .split('\n')
      .filter((line) => line.startsWith(`${proxy.host}/shared:`))
      .map((line) => line.split(' ')[1]);
    t.equal(ids.length, 2, listed.stdout);
    t.equal(ids[0], ids[1], 'both tags are one image, one rootfs');

    // Cancelling: closing the connection kills skopeo; nothing stays.
    proxy.hold();
    const { request, first: started } = postAndReadFirst(sandbox.socket, '/images/pull', {
      reference: `${proxy.host}/cancel:1`,
    });
    const opening = await started;
    t.equal(opening.status, 200);
    t.match(opening.first, /Pulling from cancel/);
    await eventually(async () =>
      processesMentioning('copy', `${proxy.host}/cancel`).length > 0 ? true : undefined,
    );
    request.destroy();
    await eventually(
      async () => (processesMentioning('copy', `${proxy.host}/cancel`).length === 0 ? true : undefined),
      10_000,
    );
    t.pass('skopeo is gone once the client went away');
    await eventually(async () => (scratchLeft(sandbox.bundleRoot).length === 0 ? true : undefined), 10_000);
    proxy.release();
    const afterCancel = await dockerCli(dockerSocket, 'images', '--format', '{{.Repository}}');
    t.notMatch(afterCancel.stdout, /cancel/, 'no image of the cancelled pull');

    // Refused before any layer moves: another platform, a layer over --max-layer-bytes.
    const blobsNow = proxy.blobGetCount();
    const platform = await pull(`${proxy.host}/other:1`);
    t.equal(platform.status, 404);
    t.equal(platform.body?.code, 'image_platform_missing');
    t.match(
      platform.body?.detail,
      `pulling ${proxy.host}/other:1: the registry has no manifest for linux/${HOST_ARCHITECTURE}, only for linux/${otherArchitecture}`,
    );
    const platformCli = await dockerCli(dockerSocket, 'pull', `${proxy.host}/other:1`);
    t.not(platformCli.code, 0);
    t.match(platformCli.stderr, `no manifest for linux/${HOST_ARCHITECTURE}`);
    const quota = await pull(`${proxy.host}/big:1`);
    t.equal(quota.status, 413);
    t.equal(quota.body?.code, 'image_layer_too_large');
    t.match(
      quota.body?.detail,
      /pulling .*\/big:1: layer sha256:[a-f0-9]{64} is \d+ bytes, over the layer quota of 2097152 bytes \(--max-layer-bytes\)/,
    );
    const quotaCli = await dockerCli(dockerSocket, 'pull', `${proxy.host}/big:1`);
    t.not(quotaCli.code, 0);
    t.match(quotaCli.stderr, /over the layer quota/);
    t.equal(proxy.blobGetCount(), blobsNow, 'neither downloaded a blob');

    const unknown = await pull(`${proxy.host}/multi:nope`);
    t.equal(unknown.status, 404);
    t.equal(unknown.body?.code, 'image_not_found');
    t.match(unknown.body?.detail, `pulling ${proxy.host}/multi:nope: no such image or tag in the registry`);
    const unreachable = await pull('127.0.0.1:1/bb:1');
    t.equal(unreachable.status, 502);
    t.equal(unreachable.body?.code, 'registry_failed');
    t.match(unreachable.body?.detail, /127\.0\.0\.1:1\/bb:1: the registry is unreachable/);
    const hub = await pull('docker.io/library/busybox:1');
    t.equal(hub.status, 400);
    t.equal(hub.body?.code, 'image_reference_invalid');
    const bare = await pull('busybox');
    t.equal(bare.status, 400, 'a name without a registry does not validate');
    t.equal(bare.body?.code, 'invalid_body');
    const password = 'native-pull-secret-1';
    const withAuth = await pull('127.0.0.1:1/bb:1', { auth: { username: 'alice', password } });
    t.notOk(JSON.stringify(withAuth.body).includes(password), 'credentials are not in the error');
    t.notOk(
      readFileSync(join(sandbox.stateDir, 'audit.log'), 'utf8').includes(password),
      'nor in the audit log',
    );
    t.same(scratchLeft(sandbox.bundleRoot), [], 'no scratch directory is left by any pull');
  },
);
