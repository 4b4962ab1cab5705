import { arch } from 'node:os';
import { readFileSync } from 'node:fs';

export function dockerArch(): string {
  return { x64: 'amd64', arm64: 'arm64' }[arch()] ?? arch();
}

/** Docker's `system_cpu_usage`: the host's CPU time in nanoseconds, from /proc/stat (USER_HZ is 100 on Linux). */
export function hostCpuNanoseconds(): number {
  // A one-page file of the kernel's, read synchronously so a streamed sample and its host time stay together.
  const text = readFileSync('/proc/stat', 'utf8');
  const line = text.split('\n').find((each) => each.startsWith('cpu '));
  const ticks = (line ?? '')
    .split(/\s+/)
    .slice(1, 8)
    .reduce((sum, field) => sum + (Number(field) || 0), 0);
  return ticks * 10_000_000;
}
