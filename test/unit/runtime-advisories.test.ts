import t from 'tap';
import { ProcessRunner } from '../../src/runtime/process-runner.js';
import { Runc } from '../../src/runtime/runc.js';
import { collectRuntimeFacts, type RuntimeFacts } from '../../src/runtime/runtime-info.js';
import {
  assessRuntime,
  isFixedUpstream,
  parseRuntimeVersion,
} from '../../src/security/runtime-advisories.js';
import { RUNTIME_BINARY } from '../helpers/sandbox.js';

const runc = (version: string, pkg?: RuntimeFacts['package']): RuntimeFacts => ({
  binary: '/usr/sbin/runc',
  versionText: `runc version ${version}\ncommit: x\nspec: 1.0.2-dev\n`,
  package: pkg,
});

const statuses = (facts: RuntimeFacts) =>
  Object.fromEntries(assessRuntime(facts).advisories.map((verdict) => [verdict.cve, verdict.status]));

t.test('versions compare like runc releases, release candidates before the release', async (t) => {
  t.same(parseRuntimeVersion('1.1.5+ds1'), { numbers: [1, 1, 5], rc: Infinity });
  t.same(parseRuntimeVersion('1.0.0-rc6'), { numbers: [1, 0, 0], rc: 6 });
  t.same(parseRuntimeVersion('1.4.0-rc.3'), { numbers: [1, 4, 0], rc: 3 });
  t.equal(parseRuntimeVersion('unknown'), undefined);
  const family = ['1.2.8', '1.3.3', '1.4.0-rc.3'];
  const fixed = (version: string) => isFixedUpstream(parseRuntimeVersion(version)!, family);
  t.same(
    ['1.1.15', '1.2.7', '1.2.8', '1.3.2', '1.3.3', '1.4.0-rc.2', '1.4.0-rc.3', '1.4.0', '1.5.1'].map(fixed),
    [false, false, true, false, true, false, true, true, true],
  );
});

t.test('upstream releases: fixed from the first fixed release of each line', async (t) => {
  t.same(statuses(runc('1.3.3')), {
    'CVE-2019-5736': 'fixed',
    'CVE-2024-21626': 'fixed',
    'CVE-2025-31133': 'fixed',
    'CVE-2025-52565': 'fixed',
    'CVE-2025-52881': 'fixed',
  });
  t.same(assessRuntime(runc('1.3.3')).warnings, [], 'nothing to warn about');
  t.match(statuses(runc('1.1.11')), { 'CVE-2019-5736': 'fixed', 'CVE-2024-21626': 'vulnerable' });
  t.match(statuses(runc('1.0.0-rc6')), { 'CVE-2019-5736': 'vulnerable' });
  t.match(statuses(runc('1.2.7')), { 'CVE-2024-21626': 'fixed', 'CVE-2025-31133': 'vulnerable' });
});

t.test("a Debian backport counts when the package's changelog names the CVE, and only then", async (t) => {
  const debian = runc('1.1.5+ds1', {
    manager: 'dpkg',
    name: 'runc',
    version: '1.1.5+ds1-1+deb12u1',
    changelog: 'runc (1.1.5+ds1-1+deb12u1) bookworm-security; urgency=high\n  * CVE-2024-21626: leaked fds\n',
  });
  const report = assessRuntime(debian);
  t.same(statuses(debian), {
    'CVE-2019-5736': 'fixed',
    'CVE-2024-21626': 'fixed-by-distribution',
    'CVE-2025-31133': 'vulnerable',
    'CVE-2025-52565': 'vulnerable',
    'CVE-2025-52881': 'vulnerable',
  });
  t.same(report.package, { name: 'runc', version: '1.1.5+ds1-1+deb12u1' });
  t.equal(report.warnings.length, 3, 'one warning per CVE still open');
  t.match(
    report.warnings[0],
    /^CVE-2025-31133 .*runc 1\.1\.5\+ds1 predates the fix \(fixed upstream in runc 1\.2\.8, 1\.3\.3, 1\.4\.0-rc\.3\), and the changelog of package runc 1\.1\.5\+ds1-1\+deb12u1 does not mention it/,
  );
  t.match(report.advisories[1]?.detail, /lists CVE-2024-21626 as fixed \(a backport\)/);
  const noChangelog = runc('1.1.5+ds1', { manager: 'dpkg', name: 'runc', version: '1.1.5', changelog: '' });
  t.match(assessRuntime(noChangelog).warnings[0], /ships no changelog to check for a backport/);
});

t.test('other runtimes and unreadable versions are reported as unknown, not as safe', async (t) => {
  const crun: RuntimeFacts = {
    binary: '/usr/bin/crun',
    versionText: 'crun version 1.8.1\n',
    package: undefined,
  };
  t.same(Object.values(statuses(crun)), ['unknown', 'unknown', 'unknown', 'unknown', 'unknown']);
  t.match(assessRuntime(crun).warnings[0], /runtime is crun 1\.8\.1; check its vendor's advisories/);
  const broken: RuntimeFacts = { binary: '/x/runc', versionText: '', package: undefined };
  t.equal(assessRuntime(broken).version, null);
  t.equal(assessRuntime(broken).warnings.length, 5);
});

t.test("this host's runtime: what the report says agrees with its own facts", async (t) => {
  const runner = new ProcessRunner();
  const runc = new Runc({ binary: RUNTIME_BINARY, root: '/nonexistent-root', scratchDir: '/tmp', runner });
  const facts = await collectRuntimeFacts(runc, runner);
  t.equal(await runc.versionText(), facts.versionText, 'one --version serves every reader');
  t.equal(
    runner.spawnCount,
    1 + (facts.package ? 2 : 0),
    'runc --version ran once, dpkg-query for the package',
  );
  const report = assessRuntime(facts);
  t.match(facts.versionText, /version/);
  t.ok(report.version, `version read: ${report.version}`);
  for (const verdict of report.advisories) {
    if (verdict.status === 'fixed-by-distribution') {
      t.ok(
        facts.package?.changelog.includes(verdict.cve),
        `${verdict.cve}: backport claimed by the changelog`,
      );
    }
    t.equal(
      report.warnings.some((warning) => warning.startsWith(verdict.cve)),
      verdict.status === 'vulnerable' || verdict.status === 'unknown',
      `${verdict.cve} (${verdict.status}) is warned about exactly when not known to be fixed`,
    );
  }
  if (facts.package) t.match(facts.package, { manager: 'dpkg', name: /\S/, version: /\S/ });
});
