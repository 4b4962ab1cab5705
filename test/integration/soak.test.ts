import t from 'tap';
import { formatSoakReport, runSoak } from '../../bench/soak.js';

// A few rounds of the crash soak (bench/soak.ts; run it longer by hand, see the README): random concurrent
// operations, a SIGKILL of runcd in every round, and after each restart runc, conmon, the store, the events and
// the exit codes must agree. The seed is printed, so a failure can be repeated.
t.test('crash soak: a few rounds of random operations and SIGKILLs break no invariant', async (t) => {
  const report = await runSoak({
    rounds: Number(process.env.RUNCD_SOAK_ROUNDS ?? 6),
    seconds: 120,
    maxContainers: 6,
    seed: Number(process.env.RUNCD_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31)),
  });
  t.comment(formatSoakReport(report));
  t.ok(report.kills > 0, 'runcd was killed');
  t.same(report.violations, {}, 'no violation');
});
