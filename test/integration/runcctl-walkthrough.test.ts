import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { cleanRuncRoot, runcctl, runcOn, startDaemon, type Outcome } from '../helpers/cli.js';
import { eventually, makeSandbox } from '../helpers/sandbox.js';

t.test(
  "runcctl runs the seed's whole walkthrough, and its exit codes are runc's for the same steps",
  async (t) => {
    const sandbox = makeSandbox(t, 'ctl');
    // One bundle, used by both: the seed's lifecycle-bundle (busybox, sleep 999999, terminal false).
    const bundle = sandbox.bundle('lifecycle-bundle');
    const runcRoot = join(sandbox.dir, 'runc-cli');
    mkdirSync(runcRoot);
    t.teardown(() => cleanRuncRoot(runcRoot));
    await startDaemon(t, sandbox);
    const runc = runcOn(runcRoot);
    const ctl = (args: string[]) => runcctl(sandbox, args, { cwd: bundle });
    const id = 'mycontainer';

    /** runc's kill returns before the init is gone; runcd's SIGKILL answers once the exit is recorded. */
    const settle = async (which: 'runc' | 'runcctl') => {
      if (which === 'runcctl') return;
      await eventually(async () => {
        const state = await runc(['state', id]);
        return /"status": "stopped"/.test(state.stdout) ? true : undefined;
      });
    };

    const steps: Array<{ name: string; args: string[]; expect: number; after?: boolean }> = [
      // Exercise 1: create and inspect
      { name: 'create', args: ['create', id], expect: 0 },
      { name: 'list after create', args: ['list'], expect: 0 },
      { name: 'state after create', args: ['state', id], expect: 0 },
      // Exercise 2: start
      { name: 'start', args: ['start', id], expect: 0 },
      { name: 'state after start', args: ['state', id], expect: 0 },
      // Exercise 3: exec (and an exit code of the process's own)
      { name: 'exec ps', args: ['exec', id, '/bin/ps'], expect: 0 },
      { name: 'exec ls -la /', args: ['exec', id, 'ls', '-la', '/'], expect: 0 },
      { name: 'exec exiting 7', args: ['exec', id, 'sh', '-c', 'exit 7'], expect: 7 },
      { name: 'exec of a missing program', args: ['exec', id, 'nosuch'], expect: 255 },
      // Exercise 4: signals (busybox sleep as PID 1 ignores SIGTERM; the lesson's SIGKILL note)
      { name: 'kill SIGTERM', args: ['kill', id, 'SIGTERM'], expect: 0 },
      { name: 'kill SIGKILL', args: ['kill', id, 'SIGKILL'], expect: 0, after: true },
      { name: 'list after kill', args: ['list'], expect: 0 },
      { name: 'state after kill', args: ['state', id], expect: 0 },
      // Exercise 5: exec into stopped fails, delete, gone
      { name: 'exec into a stopped container', args: ['exec', id, '/bin/ps'], expect: 255 },
      { name: 'kill a stopped container', args: ['kill', id, 'SIGKILL'], expect: 1 },
      { name: 'delete', args: ['delete', id], expect: 0 },
      { name: 'state of a deleted container', args: ['state', id], expect: 1 },
      { name: 'delete again', args: ['delete', id], expect: 1 },
      // Common errors
      { name: 'create', args: ['create', id], expect: 0 },
      { name: 'create an existing id', args: ['create', id], expect: 1 },
      { name: 'start', args: ['start', id], expect: 0 },
      { name: 'start twice', args: ['start', id], expect: 1 },
      { name: 'delete a running container', args: ['delete', id], expect: 1 },
      { name: 'delete --force', args: ['delete', '--force', id], expect: 0 },
      { name: 'list when empty', args: ['list'], expect: 0 },
      { name: 'state without an id', args: ['state'], expect: 1 },
      { name: 'an unknown command', args: ['frobnicate'], expect: 3 },
    ];
    const outputs: Record<string, { runc: Outcome; runcctl: Outcome }> = {};
    for (const [index, step] of steps.entries()) {
      const viaRunc = await runc(step.args, { cwd: bundle });
      if (step.after) await settle('runc');
      const viaCtl = await ctl(step.args);
      outputs[`${index} ${step.name}`] = { runc: viaRunc, runcctl: viaCtl };
      t.equal(viaRunc.code, step.expect, `runc: ${step.name} exits ${step.expect}`);
      t.equal(viaCtl.code, viaRunc.code, `runcctl: ${step.name} exits as runc does (${viaRunc.code})`);
      if ([1, 3, 255].includes(viaCtl.code)) {
        t.match(viaCtl.stderr, /^runcctl: [^\n]+\n$/, `runcctl: ${step.name}: one line on stderr`);
      }
    }

    const at = (name: string) => Object.entries(outputs).find(([key]) => key.endsWith(` ${name}`))![1];
    // Output that should read the same: runc's list table, column for column.
    const header = (text: string) => text.split('\n')[0]!.split(/\s+/);
    t.same(header(at('list after create').runcctl.stdout), header(at('list after create').runc.stdout));
    t.match(
      at('list after create').runcctl.stdout,
      new RegExp(`^${id} +\\d+ +created +${bundle} +\\S+Z +root\\n`, 'm'),
    );
    t.match(at('list after kill').runcctl.stdout, new RegExp(`^${id} +0 +stopped +${bundle} `, 'm'));
    t.equal(
      at('list when empty').runcctl.stdout,
      at('list when empty').runc.stdout,
      "the empty table is runc's",
    );
    for (const name of ['state after create', 'state after start', 'state after kill']) {
      const ours = JSON.parse(at(name).runcctl.stdout) as { status: string; bundle: string; pid: number };
      const theirs = JSON.parse(at(name).runc.stdout) as { status: string; bundle: string };
      t.equal(ours.status, theirs.status, `${name}: same status`);
      t.equal(ours.bundle, theirs.bundle);
    }
    t.match(
      at('exec ps').runcctl.stdout,
      /^\s+1 \S+\s+sleep 999999$/m,
      'exec prints the process output: sleep is PID 1',
    );
    t.match(at('exec ls -la /').runcctl.stdout, /bin/);
    t.match(at('exec of a missing program').runcctl.stderr, /executable file not found/);
    t.match(
      at('exec into a stopped container').runcctl.stderr,
      /^runcctl: cannot exec into a stopped container\n$/,
    );
    t.equal(at('state of a deleted container').runcctl.stderr, `runcctl: container "${id}" does not exist\n`);

    // Exercise 6, the full lifecycle once more, all through runcctl.
    for (const args of [
      ['create', 'lifecycle-test'],
      ['start', 'lifecycle-test'],
      ['exec', 'lifecycle-test', '/bin/ps'],
      ['kill', 'lifecycle-test', 'SIGKILL'],
      ['delete', 'lifecycle-test'],
    ]) {
      t.equal((await ctl(args)).code, 0, `exercise 6: ${args.join(' ')}`);
    }
    t.equal((await ctl(['list', '-q'])).stdout, '', 'nothing left');
  },
);
