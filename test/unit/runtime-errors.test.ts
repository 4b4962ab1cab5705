import t from 'tap';
import { classifyRuntimeMessage, extractRuntimeMessage } from '../../src/runtime/runc.js';

// Recorded from runc 1.1.5 with --log-format json on this kind of machine.
const RECORDED: ReadonlyArray<[string, string, string]> = [
  [
    '{"level":"error","msg":"cannot start a container that has stopped","time":"2026-11-29T00:06:59Z"}\n',
    'cannot start a container that has stopped',
    'stopped',
  ],
  [
    '{"level":"error","msg":"container not running","time":"2026-11-29T00:06:59Z"}\n',
    'container not running',
    'not_running',
  ],
  [
    '{"level":"error","msg":"exec failed: cannot exec in a stopped container","time":"2026-11-29T00:06:59Z"}\n',
    'exec failed: cannot exec in a stopped container',
    'stopped',
  ],
  [
    '{"level":"error","msg":"container does not exist","time":"2026-11-29T00:06:59Z"}\n',
    'container does not exist',
    'not_found',
  ],
  [
    '{"level":"error","msg":"cannot start an already running container","time":"2026-11-29T00:06:59Z"}\n',
    'cannot start an already running container',
    'already_running',
  ],
  [
    '{"level":"error","msg":"cannot delete container c1 that is not stopped: running","time":"2026-11-29T00:06:59Z"}\n',
    'cannot delete container c1 that is not stopped: running',
    'not_stopped',
  ],
  [
    '{"level":"error","msg":"exec failed: cannot exec in a paused container (use --ignore-paused to override)","time":"2026-11-29T00:06:59Z"}\n',
    'exec failed: cannot exec in a paused container (use --ignore-paused to override)',
    'paused',
  ],
  [
    '{"level":"error","msg":"unknown signal \\"KILLX\\"","time":"2026-11-29T00:06:59Z"}\n',
    'unknown signal "KILLX"',
    'failed',
  ],
  [
    '{"level":"warning","msg":"some warning","time":"x"}\n{"level":"error","msg":"runc run failed: unable to start container process: exec: \\"sleep\\": executable file not found in $PATH","time":"x"}\n',
    'runc run failed: unable to start container process: exec: "sleep": executable file not found in $PATH',
    'executable_not_found',
  ],
  // crun prints plain text
  ['crun: container `c1` does not exist\n', 'container `c1` does not exist', 'failed'],
  ['', '', 'failed'],
];

t.test('runc error output becomes its message and a kind', async (t) => {
  for (const [output, message, kind] of RECORDED) {
    const extracted = extractRuntimeMessage(output);
    t.equal(extracted, message, `message of ${JSON.stringify(output).slice(0, 60)}`);
    t.equal(classifyRuntimeMessage(extracted), kind, `kind of ${JSON.stringify(message)}`);
  }
});

// runc 1.1.5's words for an exec whose input is wrong, or whose container died under it (recorded here).
const EXEC_FAILURES: ReadonlyArray<[string, string]> = [
  [
    'exec failed: unable to start container process: chdir to cwd ("/nope") set in config.json failed: no such file or directory',
    'invalid_cwd',
  ],
  [
    'exec failed: unable to start container process: chdir to cwd ("/plain") set in config.json failed: not a directory',
    'invalid_cwd',
  ],
  ['exec failed: unable to start container process: exec: "/bin": permission denied', 'not_executable'],
  [
    'exec failed: unable to start container process: unable to setup user: uids and gids must be in range 0-2147483647',
    'invalid_user',
  ],
  ['exec failed: write init-p: broken pipe', 'died'],
  [
    'exec failed: unable to create new parent process: namespace path: lstat /proc/8160/ns/ipc: no such file or directory',
    'died',
  ],
];

t.test('exec failures that are the caller’s mistake or a lost race have their own kinds', async (t) => {
  for (const [message, kind] of EXEC_FAILURES) t.equal(classifyRuntimeMessage(message), kind, message);
});
