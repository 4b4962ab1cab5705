import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Bundle } from '../../src/schemas/bundle.js';
import { uploadRootfs } from '../helpers/rootfs.js';
import { client, makeSandbox, startInProcess } from '../helpers/sandbox.js';
import { buildTar, type TarEntry } from '../helpers/tar-builder.js';

const MIB = 1024 * 1024;

/**
 * Hostile tarballs: each is refused with a 4xx naming the entry, nothing is written outside the bundle, the
 * partial rootfs is removed, and the bundle is left as it was (still waiting for a rootfs), so a good upload
 * afterwards works.
 */
t.test('hostile rootfs uploads are refused and leave nothing behind', async (t) => {
  const sandbox = makeSandbox(t, 'tarx');
  const daemon = await startInProcess(t, sandbox, { maxRootfsBytes: 8 * MIB });
  const api = client(daemon);
  // A directory beside the bundle root that a hostile archive would love to write into.
  const outside = join(sandbox.dir, 'outside');
  mkdirSync(outside);
  const passwdBefore = statSync('/etc/passwd');
  const created = await api.post<Bundle>('/bundles', {
    id: 'target',
    rootfs: { upload: true },
    process: { args: ['/bin/app'] },
  });
  t.equal(created.status, 201);
  const bundleDir = join(sandbox.bundleRoot, 'target');

  const dir = (name: string): TarEntry => ({ header: { name, type: 'directory', mode: 0o755 } });
  const cases: Array<{
    name: string;
    entries: TarEntry[];
    status: number;
    code: string;
    detail: RegExp;
    gzip?: boolean;
  }> = [
    {
      name: '../../etc/passwd',
      entries: [dir('etc'), { header: { name: '../../etc/passwd' }, content: 'root::0:0::/:/bin/sh\n' }],
      status: 400,
      code: 'rootfs_unsafe_path',
      detail: /entry "\.\.\/\.\.\/etc\/passwd" contains "\.\."/,
    },
    {
      name: 'an absolute path',
      entries: [{ header: { name: `${outside}/absolute` }, content: 'x' }],
      status: 400,
      code: 'rootfs_unsafe_path',
      detail: /has an absolute path/,
    },
    {
      name: 'a symlink, then a file through it',
      entries: [
        { header: { name: 'escape', type: 'symlink', linkname: outside } },
        { header: { name: 'escape/pwned' }, content: 'x' },
      ],
      status: 400,
      code: 'rootfs_through_symlink',
      detail: /entry "escape\/pwned" would be written through the symlink "escape"/,
    },
    {
      name: 'a symlink climbing out of the rootfs',
      entries: [dir('etc'), { header: { name: 'etc/up', type: 'symlink', linkname: '../../../outside' } }],
      status: 400,
      code: 'rootfs_link_outside',
      detail: /symlink "etc\/up" points outside the rootfs/,
    },
    {
      name: 'a hard link to a host file',
      entries: [{ header: { name: 'shadow', type: 'link', linkname: '/etc/shadow' } }],
      status: 400,
      code: 'rootfs_link_outside',
      detail: /hard link "shadow" points outside the rootfs/,
    },
    {
      name: 'a device node',
      entries: [
        dir('dev'),
        { header: { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o666 } },
      ],
      status: 400,
      code: 'rootfs_device_node',
      detail: /entry "dev\/sda" is a block device/,
    },
    {
      name: 'a gzip bomb over the quota',
      entries: [dir('bin'), { header: { name: 'bin/app', mode: 0o755 }, content: Buffer.alloc(12 * MIB) }],
      gzip: true,
      status: 413,
      code: 'rootfs_too_large',
      detail: /larger than the quota of 8388608 bytes/,
    },
    {
      name: 'not a tarball at all',
      entries: [],
      status: 400,
      code: 'rootfs_invalid_archive',
      detail: /not a tar archive/,
    },
  ];

  for (const hostile of cases) {
    const archive =
      hostile.entries.length > 0
        ? await buildTar(hostile.entries, { gzip: hostile.gzip ?? false })
        : Buffer.from('this is not a tar archive, just text long enough to fill a header block'.repeat(10));
    const response = await uploadRootfs(daemon, 'target', archive);
    t.equal(response.status, hostile.status, `${hostile.name}: ${JSON.stringify(response.body)}`);
    t.equal(response.body.code, hostile.code, hostile.name);
    t.match(response.body.detail, hostile.detail, hostile.name);
    t.same(readdirSync(bundleDir), ['config.json'], `${hostile.name}: the partial rootfs is removed`);
    t.same(readdirSync(outside), [], `${hostile.name}: nothing written outside the bundle`);
  }
  t.notOk(existsSync(join(sandbox.dir, 'etc')), 'no etc/ beside the sandbox');
  t.equal(statSync('/etc/passwd').mtimeMs, passwdBefore.mtimeMs, "the host's /etc/passwd is untouched");
  t.match((await api.get<Bundle>('/bundles/target')).body.rootfs, { ready: false, sizeBytes: 0 });

  await t.test('an archive larger than the upload limit is refused before a byte is read', async (t) => {
    const response = await daemon.app.inject({
      method: 'PUT',
      url: '/bundles/target/rootfs',
      headers: { 'content-type': 'application/x-tar', 'content-length': String(1024 * MIB) },
      payload: Buffer.alloc(10),
    });
    t.equal(response.statusCode, 413);
    t.equal(response.json().code, 'rootfs_too_large');
  });

  await t.test('a JSON body is not a tarball', async (t) => {
    const response = await daemon.app.inject({
      method: 'PUT',
      url: '/bundles/target/rootfs',
      payload: { files: [] },
    });
    t.equal(response.statusCode, 400);
    t.equal(response.json().code, 'rootfs_not_a_tarball');
  });

  await t.test(
    'an absolute symlink stays a symlink inside the rootfs, and a good archive still works',
    async (t) => {
      const archive = await buildTar([
        { header: { name: './', type: 'directory', mode: 0o755 } },
        { header: { name: './bin/', type: 'directory', mode: 0o755 } },
        { header: { name: './bin/app', mode: 0o4755, uid: 0, gid: 0 }, content: '#!/bin/sh\necho hi\n' },
        { header: { name: './bin/app-link', type: 'link', linkname: './bin/app' } },
        { header: { name: './etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/UTC' } },
        { header: { name: './bin/app', mode: 0o755 }, content: '#!/bin/sh\necho later entries win\n' },
      ]);
      const response = await uploadRootfs(daemon, 'target', archive);
      t.equal(response.status, 200, JSON.stringify(response.body));
      t.match(response.body, { id: 'target', fileCount: 5 }, 'every entry but the rootfs itself');
      const rootfs = join(bundleDir, 'rootfs');
      t.equal(readFileSync(join(rootfs, 'bin', 'app'), 'utf8'), '#!/bin/sh\necho later entries win\n');
      t.equal(statSync(join(rootfs, 'bin', 'app')).mode & 0o7777, 0o755);
      t.equal(statSync(join(bundleDir)).mode & 0o777, 0o700, 'the bundle directory is private to root');
      t.equal(statSync(rootfs).mode & 0o777, 0o755);
      t.same(readdirSync(bundleDir).sort(), ['config.json', 'rootfs']);
    },
  );
});
