import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { AttachConnection, resizeTerminal } from '../../src/runtime/attach-socket.js';
import { Conmon } from '../../src/runtime/conmon.js';
import { ProcessRunner } from '../../src/runtime/process-runner.js';
import { Runc } from '../../src/runtime/runc.js';
import { CONMON_BINARY, RUNTIME_BINARY, eventually, makeSandbox } from '../helpers/sandbox.js';

// A container whose process has a terminal, driven through conmon's attach socket at the runtime layer.
const sandbox = makeSandbox(t, 'terminal-container');
const runner = new ProcessRunner();
const runc = new Runc({
  binary: RUNTIME_BINARY,
  root: sandbox.runtimeRoot,
  scratchDir: join(sandbox.stateDir, 'scratch'),
  runner,
});
const conmon = new Conmon({
  binary: CONMON_BINARY,
  runtimeBinary: RUNTIME_BINARY,
  stateDir: sandbox.stateDir,
  runc,
  runner,
});

async function attach(id: string, output: Buffer[]) {
  let closed!: () => void;
  const gone = new Promise<void>((resolve) => (closed = resolve));
  const connection = await AttachConnection.connect(conmon.attachDir(id), {
    onOutput: (_stream, data) => output.push(data),
    onClose: () => closed(),
  });
  return { connection, gone };
}

const seen = (output: Buffer[], pattern: RegExp) =>
  eventually(async () => (pattern.test(Buffer.concat(output).toString()) ? true : undefined));

t.test('a terminal container: type, resize, detach, attach again, exit code', async (t) => {
  await conmon.prepare();
  const id = sandbox.id('tty');
  const bundle = sandbox.bundle('tty', ['sh'], (spec) => {
    const process = spec.process as Record<string, unknown>;
    process.terminal = true;
    process.consoleSize = { height: 24, width: 80 };
  });
  // As runcd's checked copy does: the rootfs stays the caller's, named by its absolute path.
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { root: { path: string } };
  spec.root.path = join(bundle, 'rootfs');
  const config = JSON.stringify(spec);
  await conmon.create(id, config, { stdin: true, stdinOnce: false });
  t.teardown(() => runc.delete(id, { force: true }).catch(() => undefined));

  const first: Buffer[] = [];
  const one = await attach(id, first);
  await runc.start(id);
  await one.connection.write(Buffer.from('stty size; tty; echo $((6*7))\n'));
  await seen(first, /42\r\n/);
  t.match(Buffer.concat(first).toString(), /24 80\r\n/);
  t.match(Buffer.concat(first).toString(), /\/dev\/pts\/\d+\r\n/);
  resizeTerminal(conmon.attachDir(id), 50, 150);
  one.connection.close();

  const second: Buffer[] = [];
  const two = await attach(id, second);
  await two.connection.write(Buffer.from('stty size; exit 7\n'));
  await two.gone;
  t.match(Buffer.concat(second).toString(), /50 150\r\n/, 'the resize reached the terminal');
  const exit = await eventually(() => conmon.readExit(id));
  t.equal(exit.exitCode, 7);
  const log = readFileSync(conmon.filesFor(id).log, 'utf8');
  t.match(log, /42/, 'the terminal output is in the container log too');
});
