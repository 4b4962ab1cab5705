import { runcctl } from './main.js';

/** The `runcctl` binary: real stdio, real signals, and the exit code runcctl decided on. */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

const code = await runcctl(process.argv.slice(2), process.env, {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  cwd: process.cwd(),
  // A terminal without -t is left alone (runcd has no terminal for the process yet); a pipe or file is passed on.
  stdin: () => (process.stdin.isTTY ? undefined : process.stdin),
  terminal: {
    input: process.stdin,
    write: (stream, data) => void (stream === 'stdout' ? process.stdout : process.stderr).write(data),
    size: () =>
      process.stdout.isTTY && process.stdout.rows > 0
        ? { rows: process.stdout.rows, cols: process.stdout.columns }
        : undefined,
    onResize(handler) {
      process.on('SIGWINCH', handler);
      return () => process.off('SIGWINCH', handler);
    },
  },
  onSignal(handler) {
    for (const signal of FORWARDED_SIGNALS) process.on(signal, handler);
    return () => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, handler);
    };
  },
});
// Let stdout drain (a pipe may be slow) before leaving with the code.
process.stdout.write('', () => process.exit(code));
