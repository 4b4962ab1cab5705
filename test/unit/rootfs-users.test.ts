import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { resolveUserInRootfs } from '../../src/bundles/rootfs-users.js';

function rootfsWith(t: Test, passwd?: string, group?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'runcd-users-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'etc'));
  if (passwd !== undefined) writeFileSync(join(dir, 'etc', 'passwd'), passwd);
  if (group !== undefined) writeFileSync(join(dir, 'etc', 'group'), group);
  return dir;
}

const PASSWD =
  'root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n';
const GROUP = 'root:x:0:\napps:x:1001:\nstaff:x:50:\n';

t.test('names and numbers resolve as Docker resolves them', async (t) => {
  const rootfs = rootfsWith(t, PASSWD, GROUP);
  t.same(await resolveUserInRootfs(rootfs, 'nobody'), { ok: true, uid: 65534, gid: 65534 });
  t.same(await resolveUserInRootfs(rootfs, 'app'), { ok: true, uid: 1000, gid: 1001 }, 'primary group');
  t.same(await resolveUserInRootfs(rootfs, '1000'), { ok: true, uid: 1000, gid: 1001 }, 'a known uid');
  t.same(await resolveUserInRootfs(rootfs, '4242'), { ok: true, uid: 4242, gid: 0 }, 'an unknown uid: gid 0');
  t.same(await resolveUserInRootfs(rootfs, 'app:staff'), { ok: true, uid: 1000, gid: 50 });
  t.same(await resolveUserInRootfs(rootfs, '7:8'), { ok: true, uid: 7, gid: 8 });
  t.match(await resolveUserInRootfs(rootfs, 'ghost'), { ok: false, reason: /unable to find user ghost/ });
  t.match(await resolveUserInRootfs(rootfs, 'app:ghosts'), {
    ok: false,
    reason: /unable to find group ghosts/,
  });
  t.match(await resolveUserInRootfs(rootfs, ':5'), { ok: false });
  t.match(await resolveUserInRootfs(rootfs, '4294967295'), { ok: false, reason: /ids go up to/ });
});

t.test('the files are read inside the rootfs: a link to a host path finds nothing there', async (t) => {
  const rootfs = rootfsWith(t);
  // On the host this link would name a file with root in it; inside the rootfs it names only itself.
  symlinkSync('/etc/passwd', join(rootfs, 'etc', 'passwd'));
  t.match(await resolveUserInRootfs(rootfs, 'root'), { ok: false, reason: /unable to find user root/ });
  const empty = rootfsWith(t);
  t.same(
    await resolveUserInRootfs(empty, '0'),
    { ok: true, uid: 0, gid: 0 },
    'no passwd: numbers still work',
  );
});
