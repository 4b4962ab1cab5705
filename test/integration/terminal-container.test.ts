import { mkdirSync } from 'node:fs';
import t, { type Test } from 'tap';
import type { Bundle, BundleDetail } from '../../src/schemas/bundle.js';
import type { Container } from '../../src/schemas/container.js';
import { importRoot, makeBusyboxRootfs } from '../helpers/rootfs.js';
import { client, eventually, makeSandbox, startInProcess } from '../helpers/sandbox.js';

// Containers whose process has a terminal (process.terminal: true): runc's own pty, passed to conmon through its
// console socket, with real runc and conmon. Nobody is attached here; the log is where the output goes.
const sandbox = makeSandbox(t, 'ttyctr');
const imports = importRoot(sandbox);
mkdirSync(imports);
const busybox = makeBusyboxRootfs(imports);

t.test('terminal containers', async (t) => {
  const daemon = await startInProcess(t, sandbox, { importRoots: [imports] });
  const api = client(daemon);
  const logsOf = async (id: string) =>
    (await daemon.app.inject({ method: 'GET', url: `/containers/${id}/logs` })).body;
  /** Runs a container to its end and answers its exit code and log. */
  const run = async (t: Test, id: string, source: { bundle: string } | { bundleId: string }) => {
    const created = await api.post<Container>('/containers', { id, ...source, start: true });
    t.equal(created.status, 201, JSON.stringify(created.body));
    t.teardown(() => api.delete(`/containers/${id}?force=true`));
    const stopped = await eventually(async () => {
      const container = (await api.get<Container>(`/containers/${id}`)).body;
      return container.status === 'stopped' ? container : undefined;
    }, 20_000);
    return { exitCode: stopped.exitCode, log: await logsOf(id) };
  };
  const terminalBundle = (name: string, args: string[], consoleSize?: { height: number; width: number }) =>
    sandbox.bundle(name, args, (spec) => {
      const process = spec.process as Record<string, unknown>;
      process.terminal = true;
      if (consoleSize) process.consoleSize = consoleSize;
    });

  await t.test('a bundle with process.terminal runs on a pty, 24x80, its output in the log', async (t) => {
    const bundle = terminalBundle('tty', ['sh', '-c', 'tty; stty size; echo done-$((6*7))']);
    const { exitCode, log } = await run(t, sandbox.id('tty'), { bundle });
    t.equal(exitCode, 0, 'the process ran to its end');
    t.match(log, /\/dev\/pts\/\d+/, 'its stdin is a terminal');
    t.match(log, /24 80/, 'which starts at 24x80');
    t.match(log, /done-42/, 'and its output is in the log');
  });

  await t.test("a bundle's own consoleSize is the terminal's size", async (t) => {
    const bundle = terminalBundle('sized', ['sh', '-c', 'stty size'], { height: 33, width: 99 });
    const { log } = await run(t, sandbox.id('sized'), { bundle });
    t.match(log, /33 99/);
  });

  await t.test('without process.terminal there is still no terminal', async (t) => {
    const bundle = sandbox.bundle('plain', ['sh', '-c', 'tty; exit 0']);
    const { log } = await run(t, sandbox.id('plain'), { bundle });
    t.match(log, /not a tty/);
  });

  await t.test('a managed bundle asks for a terminal with process.terminal', async (t) => {
    const created = await api.post<Bundle>('/bundles', {
      id: 'tty-managed',
      rootfs: { path: busybox },
      process: { args: ['sh', '-c', 'tty; stty size'], terminal: true },
    });
    t.equal(created.status, 201, JSON.stringify(created.body));
    const detail = await api.get<BundleDetail>('/bundles/tty-managed');
    const config = detail.body.config as { process: { terminal: boolean; consoleSize: unknown } };
    t.equal(config.process.terminal, true, 'the generated config.json asks runc for a terminal');
    t.same(config.process.consoleSize, { height: 24, width: 80 }, 'of 24x80');
    const { exitCode, log } = await run(t, sandbox.id('managed'), { bundleId: 'tty-managed' });
    t.equal(exitCode, 0);
    t.match(log, /\/dev\/pts\/\d+/);
    t.match(log, /24 80/);
    t.equal((await api.delete(`/containers/${sandbox.id('managed')}`)).status, 204);
    t.equal((await api.delete('/bundles/tty-managed')).status, 204);
  });
});
