import { spawnSync } from 'node:child_process';
import t from 'tap';

/**
 * The daemon's last line of defence, in a process of its own: an exception thrown from a callback and a rejection
 * nobody handles are logged through pino, with the error, and the process carries on. Without the guard the same
 * process dies, which is what it is there to prevent.
 */

const guard = new URL('../../src/observability/process-guard.js', import.meta.url).href;

function run(installGuard: boolean) {
  const script = `
    import pino from 'pino';
    import { guardProcess } from ${JSON.stringify(guard)};
    const logger = pino({ base: null }, pino.destination({ fd: 1, sync: true }));
    if (${installGuard}) guardProcess(logger);
    setImmediate(() => { throw new Error('thrown from a callback'); });
    void Promise.reject(new Error('rejected, never handled'));
    setTimeout(() => { console.log('still running'); }, 200);
  `;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: new URL('../../..', import.meta.url).pathname,
    encoding: 'utf8',
    timeout: 30_000,
  });
}

t.test(
  'an uncaught exception and an unhandled rejection are logged, and the process carries on',
  async (t) => {
    const guarded = run(true);
    t.equal(guarded.status, 0, guarded.stderr);
    const records = guarded.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string; err?: { message: string } });
    // The rejection is seen at the end of the current tick, before the setImmediate callback throws.
    t.match(records, [
      {
        level: 50,
        msg: /unhandled promise rejection; runcd carries on/,
        err: { message: 'rejected, never handled' },
      },
      { level: 50, msg: /uncaught exception; runcd carries on/, err: { message: 'thrown from a callback' } },
    ]);
    t.match(guarded.stdout, /still running/);

    const unguarded = run(false);
    t.not(unguarded.status, 0, 'without the guard the same process dies');
    t.notMatch(unguarded.stdout, /still running/);
  },
);
