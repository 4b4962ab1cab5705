import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { client, makeSandbox, startInProcess } from '../helpers/sandbox.js';

/** Exec input that is the caller's mistake is a 400 naming the field, never runc's words in a 500. */
t.test('exec input mistakes are 400s naming the field', async (t) => {
  const sandbox = makeSandbox(t, 'exin');
  const daemon = await startInProcess(t, sandbox);
  const api = client(daemon);
  const bundle = sandbox.bundle('b');
  const rootfs = join(bundle, 'rootfs');
  writeFileSync(join(rootfs, 'plain'), 'not a program\n', { mode: 0o644 });
  chmodSync(join(rootfs, 'plain'), 0o644);
  // A host directory the container cannot see, and a symlink in the rootfs naming it by its host path: the
  // lookup must resolve the link inside the container (where the path does not exist), not on the host.
  const hostOnly = join(sandbox.dir, 'host-only');
  mkdirSync(hostOnly);
  writeFileSync(join(hostOnly, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  symlinkSync(hostOnly, join(rootfs, 'escape'));
  // A relative link climbing above the rootfs stops at the container's /, as in the kernel's lookup.
  symlinkSync('../../../../../../..', join(rootfs, 'climb'));
  const id = sandbox.id('c1');
  t.equal((await api.post('/containers', { id, bundle, start: true })).status, 201);
  const exec = (body: object) => api.post(`/containers/${id}/exec`, body);

  t.test('a cwd that does not exist, or is a file, is a 400 invalid_cwd', async (t) => {
    for (const cwd of ['/nope', '/plain', '/escape', '/escape/..', '/climb/plain']) {
      const answer = await exec({ args: ['true'], cwd });
      t.equal(answer.status, 400, cwd);
      t.equal(answer.body.code, 'invalid_cwd', cwd);
      t.match(answer.body.detail, new RegExp(`cwd "${cwd}"`), cwd);
    }
  });

  t.test('the examples cwd exists in a busybox rootfs', async (t) => {
    const answer = await exec({ args: ['pwd'], cwd: '/bin', user: '1000:1000' });
    t.equal(answer.status, 200);
    t.equal(answer.body.stdout, '/bin\n');
    const climbed = await exec({ args: ['/climb/bin/pwd'], cwd: '/climb/bin' });
    t.equal(climbed.status, 200, 'a link above / resolves to / inside the container');
    t.equal(climbed.body.stdout, '/bin\n');
  });

  t.test('args[0] a directory or without an execute bit is a 400 not_executable', async (t) => {
    for (const command of ['/bin', '/plain', '/', '/climb/bin', 'climb/dev/null']) {
      const answer = await exec({ args: [command] });
      t.equal(answer.status, 400, command);
      t.equal(answer.body.code, 'not_executable', command);
      t.match(answer.body.detail, /^args\[0\]/, command);
    }
    const missing = await exec({ args: ['/escape/tool'] });
    t.equal(missing.status, 400, 'a program reached through a link to the host is not found');
    t.equal(missing.body.code, 'executable_not_found');
  });

  t.test('a uid or gid above 2147483647 is a 400 naming user', async (t) => {
    for (const user of ['2147483648', '0:2147483648', '4294967295', '9999999999', '01']) {
      const answer = await exec({ args: ['true'], user });
      t.equal(answer.status, 400, user);
      t.equal(answer.body.code, 'invalid_body', user);
      t.match(answer.body.detail, /body\.user/, user);
    }
    t.equal((await exec({ args: ['true'], user: '2147483647:2147483647' })).status, 200, 'the largest id');
  });

  t.test('an exec racing a SIGKILL of its container is a 200 or a 409, never a 500', async (t) => {
    const racer = sandbox.id('race');
    const statuses = new Map<number, number>();
    for (let round = 0; round < 8; round++) {
      t.equal((await api.post('/containers', { id: racer, bundle, start: true })).status, 201);
      // The kill goes out when the first exec is answered, while the others are at any stage of theirs.
      const execs = Array.from({ length: 6 }, () =>
        api.post(`/containers/${racer}/exec`, { args: ['true'] }),
      );
      const kill = Promise.race(execs).then(() => api.post(`/containers/${racer}/kill?signal=KILL`));
      for (const answer of await Promise.all(execs)) {
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status !== 200)
          t.equal(answer.body.code, 'container_stopped', JSON.stringify(answer.body));
      }
      await kill;
      t.equal((await api.delete(`/containers/${racer}?force=true`)).status, 204);
    }
    t.same(
      [...statuses.keys()].filter((status) => status !== 200 && status !== 409),
      [],
      `statuses ${JSON.stringify([...statuses])}`,
    );
  });
});
