import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RUNTIME_BINARY } from './sandbox.js';

/** The runc commands a wrapper can hold. */
export type RuntimeCommand = 'create' | 'start' | 'kill' | 'delete' | 'exec';

/**
 * A `--runtime` binary that runs the real runc, except that a command the test has armed stops first: the wrapper
 * consumes the arm (so exactly one invocation stops), drops a marker saying it is held, and waits until the test
 * releases it, then runs runc as asked. This makes "runcd is inside `runc X`" a state a test can wait for instead
 * of a moment it guesses. conmon runs `runc create` itself through the same binary (`-r`), so the wrapper holds
 * conmon's create too.
 */
export class RuntimeWrapper {
  readonly path: string;
  private readonly controlDir: string;
  private sequence = 0;

  constructor(dir: string) {
    this.controlDir = join(dir, 'wrapper-control');
    mkdirSync(this.controlDir, { recursive: true });
    this.path = join(dir, 'runc-wrapper.sh');
    const control = this.controlDir;
    // The command is the first argument that names one (runc's global flags and their values come before it).
    writeFileSync(
      this.path,
      `#!/bin/sh
control='${control}'
command=''
for arg in "$@"; do
  case "$arg" in
    create|start|kill|delete|exec) command="$arg"; break ;;
  esac
done
if [ -n "$command" ] && mv "$control/arm-$command" "$control/held-$command-$$" 2>/dev/null; then
  touch "$control/marker-$command"
  while [ ! -e "$control/release-$command" ]; do sleep 0.02; done
  rm -f "$control/release-$command" "$control/marker-$command"
  '${RUNTIME_BINARY}' "$@"
  status=$?
  touch "$control/done-$command"
  exit $status
fi
exec '${RUNTIME_BINARY}' "$@"
`,
    );
    chmodSync(this.path, 0o755);
  }

  /** The next invocation of `command` (and only that one) will wait to be released. */
  arm(command: RuntimeCommand): void {
    writeFileSync(join(this.controlDir, `arm-${command}`), String(this.sequence++));
  }

  /** Resolves once an armed `command` is being held. */
  async held(command: RuntimeCommand, timeoutMs = 60_000): Promise<void> {
    const marker = join(this.controlDir, `marker-${command}`);
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(marker)) {
      if (Date.now() > deadline) throw new Error(`runtime wrapper: no ${command} was held`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Lets a held `command` go on to the real runc. */
  release(command: RuntimeCommand): void {
    writeFileSync(join(this.controlDir, `release-${command}`), '');
  }

  /** Releases a held `command` and resolves once the real runc it then ran has exited. */
  async finish(command: RuntimeCommand, timeoutMs = 60_000): Promise<void> {
    const done = join(this.controlDir, `done-${command}`);
    rmSync(done, { force: true });
    this.release(command);
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(done)) {
      if (Date.now() > deadline) throw new Error(`runtime wrapper: the released ${command} did not finish`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    rmSync(done, { force: true });
  }

  /** Releases everything still held or armed (teardown). */
  releaseAll(): void {
    for (const name of readdirSync(this.controlDir)) {
      const held = /^marker-(\w+)$/.exec(name);
      if (held) writeFileSync(join(this.controlDir, `release-${held[1]}`), '');
    }
  }
}
