import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { withBusyboxImage } from '../helpers/docker-image.js';

// docker diff (what a container changed in its own layer: A, C, and D for overlayfs's whiteouts) and docker export
// (its rootfs as a tar), through the real docker CLI (issue 17).

t.test('docker diff lists what the container added, changed and deleted', async (t) => {
  const { run, sandbox } = await withBusyboxImage(t, 'ddiff');
  const name = sandbox.id('box');
  t.equal((await run('run', '-d', '--name', name, 'bb', 'sleep', '1000')).code, 0);
  const changed = await run(
    'exec',
    name,
    'sh',
    '-c',
    'echo changed > /etc/motd && mkdir -p /added/deep && echo x > /added/deep/file && rm /bin/true',
  );
  t.equal(changed.code, 0, changed.stderr);
  const diff = await run('diff', name);
  t.equal(diff.code, 0, diff.stderr);
  const lines = diff.stdout.trim().split('\n');
  for (const expected of [
    'C /etc',
    'C /etc/motd',
    'A /added',
    'A /added/deep',
    'A /added/deep/file',
    'C /bin',
    'D /bin/true',
  ]) {
    t.ok(lines.includes(expected), `${expected} (got ${JSON.stringify(lines)})`);
  }
  t.notOk(
    lines.some((line) => line.endsWith(' /bin/sh')),
    'an image file the container did not touch is not listed',
  );

  const fresh = sandbox.id('fresh');
  t.equal((await run('create', '--name', fresh, 'bb', 'true')).code, 0);
  const none = await run('diff', fresh);
  t.equal(none.code, 0, none.stderr);
  t.equal(none.stdout.trim(), '', 'a container that changed nothing has no changes');

  const readOnly = sandbox.id('ro');
  t.equal((await run('create', '--read-only', '--name', readOnly, 'bb', 'true')).code, 0);
  const ro = await run('diff', readOnly);
  t.equal(ro.code, 0, ro.stderr);
  t.equal(ro.stdout.trim(), '', 'a --read-only container has nothing to list');

  const missing = await run('diff', sandbox.id('nosuch'));
  t.not(missing.code, 0);
  t.match(missing.stderr, /No such container/i);
});

t.test('docker export writes the container rootfs, its changes included, as a tar', async (t) => {
  const { run, sandbox } = await withBusyboxImage(t, 'dexp');
  const name = sandbox.id('box');
  t.equal((await run('run', '-d', '--name', name, 'bb', 'sleep', '1000')).code, 0);
  t.equal((await run('exec', name, 'sh', '-c', 'echo exported > /made && rm /etc/motd')).code, 0);
  const file = join(sandbox.dir, 'export.tar');
  const exported = await run('export', '-o', file, name);
  t.equal(exported.code, 0, exported.stderr);
  const listing = execFileSync('tar', ['-tf', file], { encoding: 'utf8' })
    .split('\n')
    .map((entry) => entry.replace(/^\.\//, '').replace(/\/$/, ''));
  t.ok(listing.includes('bin/busybox'), 'the image files are in it');
  t.ok(listing.includes('made'), 'so is a file the container made');
  t.notOk(listing.includes('etc/motd'), 'and a file it deleted is not');
  t.equal(
    execFileSync('tar', ['-xOf', file, './made'], { encoding: 'utf8' }),
    'exported\n',
    'with its content',
  );

  // What it exported is an image again: docker import of it runs.
  t.equal((await run('import', file, 'again')).code, 0);
  const again = await run('run', '--rm', 'again', 'cat', '/made');
  t.equal(again.stdout, 'exported\n', 'the exported rootfs imported again runs');
});
