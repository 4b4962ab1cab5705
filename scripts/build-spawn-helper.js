#!/usr/bin/env node
// Compiles runcd's spawn helper (native/spawn-helper/spawn-helper.c) into dist/native/runcd-spawn-helper, where
// src/runtime/native-spawn-helper.ts looks for it. Run by `npm run build`. A failure is not fatal: without the
// binary runcd forks through its Node helper and logs why once at start, so this only warns.
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'spawn-helper', 'spawn-helper.c');
const target = join(root, 'dist', 'native', 'runcd-spawn-helper');
const compiler = process.env.CC || 'cc';

mkdirSync(dirname(target), { recursive: true });
// Built beside the target and renamed over it, so a runcd already running keeps the binary it started.
const partial = `${target}.${process.pid}.tmp`;
const result = spawnSync(
  compiler,
  ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-o', partial, source],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
if (result.status === 0) {
  renameSync(partial, target);
} else {
  rmSync(partial, { force: true });
  rmSync(target, { force: true });
  const why = result.error
    ? result.error.message
    : `${compiler} exited with ${result.status ?? result.signal}`;
  console.warn(
    `build-spawn-helper: the compiled spawn helper was not built (${why}); runcd will fork through its Node ` +
      'helper. Install a C compiler (Debian: gcc libc6-dev) and run `npm run build` to build it.',
  );
}
