import t from 'tap';
import { parseSignal } from '../../src/signals.js';

t.test('signal names and numbers as runc and kill(1) users write them', async (t) => {
  for (const [input, number, name] of [
    ['SIGTERM', 15, 'SIGTERM'],
    ['TERM', 15, 'SIGTERM'],
    ['term', 15, 'SIGTERM'],
    ['KILL', 9, 'SIGKILL'],
    ['9', 9, 'SIGKILL'],
    [9, 9, 'SIGKILL'],
    ['1', 1, 'SIGHUP'],
    ['31', 31, 'SIGSYS'],
    ['SIGUSR1', 10, 'SIGUSR1'],
    ['IOT', 6, 'SIGABRT'],
  ] as const) {
    t.same(parseSignal(input), { ok: true, signal: { number, name } }, String(input));
  }
});

t.test('invalid signals are refused with a reason', async (t) => {
  for (const input of ['0', '-9', '32', '64', '65', '999', 'KILLX', 'SIG42', '', 'SIG', '9x', ' ']) {
    const result = parseSignal(input);
    t.equal(result.ok, false, JSON.stringify(input));
    if (!result.ok) t.match(result.reason, /signal/);
  }
});

t.test('a signal with surrounding whitespace is refused, not trimmed', async (t) => {
  for (const input of ['SIGKILL ', ' SIGKILL', '9 ', '\tTERM', 'KILL\n']) {
    const result = parseSignal(input);
    t.equal(result.ok, false, JSON.stringify(input));
    if (!result.ok) t.match(result.reason, /whitespace/);
  }
});
