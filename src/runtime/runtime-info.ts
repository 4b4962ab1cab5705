import { readFile, realpath } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import type { ProcessRunner } from './process-runner.js';
import type { Runc } from './runc.js';

/**
 * What can be known about the installed runtime without trusting its name: its own `--version` text and, when
 * the binary belongs to a Debian package, the package's name, version and changelog. Distributions backport
 * security fixes without changing the upstream version (Debian's runc 1.1.5+ds1-1+deb12u1 carries the fix for
 * CVE-2024-21626, which upstream fixed in 1.1.12), and the changelog is where the package says so.
 */

export interface RuntimePackage {
  manager: 'dpkg';
  name: string;
  version: string;
  /** The decompressed changelog.Debian.gz; empty when it is not installed (e.g. docs excluded by dpkg). */
  changelog: string;
}

export interface RuntimeFacts {
  binary: string;
  versionText: string;
  package: RuntimePackage | undefined;
}

const QUERY_TIMEOUT_MS = 10_000;

/** `runtime` is the runtime adapter: its `--version` text is its to ask (runc.ts builds every runtime argv). */
export async function collectRuntimeFacts(
  runtime: Pick<Runc, 'binary' | 'versionText'>,
  runner: ProcessRunner,
): Promise<RuntimeFacts> {
  return {
    binary: runtime.binary,
    versionText: await runtime.versionText(),
    package: await debianPackageOf(runtime.binary, runner),
  };
}

async function debianPackageOf(binary: string, runner: ProcessRunner): Promise<RuntimePackage | undefined> {
  const real = await realpath(binary).catch(() => binary);
  // dpkg records the path a package shipped; with merged /usr that may be /sbin/runc or /usr/sbin/runc.
  const candidates = [...new Set([real, binary, real.replace(/^\/usr\//, '/')])];
  for (const path of candidates) {
    const owner = await dpkgQuery(runner, ['-S', path]);
    const name = owner?.split(':')[0]?.trim();
    if (!name || !/^[a-z0-9][a-z0-9+.-]+$/.test(name)) continue;
    const version = (await dpkgQuery(runner, ['-W', '-f=${Version}', name]))?.trim();
    if (!version) continue;
    const changelog = await readFile(`/usr/share/doc/${name}/changelog.Debian.gz`)
      .then((bytes) => gunzipSync(bytes).toString('utf8'))
      .catch(() => '');
    return { manager: 'dpkg', name, version, changelog };
  }
  return undefined;
}

async function dpkgQuery(runner: ProcessRunner, args: string[]): Promise<string | undefined> {
  try {
    const result = await runner.run('dpkg-query', args, { timeoutMs: QUERY_TIMEOUT_MS });
    return result.exitCode === 0 ? result.stdout : undefined;
  } catch {
    return undefined; // not a dpkg system
  }
}
