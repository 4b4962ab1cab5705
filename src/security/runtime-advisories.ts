import type { RuntimeFacts } from '../runtime/runtime-info.js';

/**
 * Judges the installed runtime against the container-escape CVEs runcd cares about. The upstream version is
 * compared with the first fixed release of each line; a distribution package whose changelog names the CVE is
 * counted as fixed by backport, because that is the package's own claim (and the only one runcd can check).
 *
 * Facts, from the runc advisories:
 * - CVE-2019-5736 (overwrite of the host runc binary through /proc/self/exe): fixed in 1.0.0-rc7.
 * - CVE-2024-21626 ("Leaky Vessels": a leaked host fd as working directory): fixed in 1.1.12.
 * - CVE-2025-31133, CVE-2025-52565, CVE-2025-52881 (masked-path and /dev/console mount races, redirected
 *   /proc writes): fixed in 1.2.8, 1.3.3 and 1.4.0-rc.3; every earlier release is affected.
 */

export type AdvisoryStatus = 'fixed' | 'fixed-by-distribution' | 'vulnerable' | 'unknown';

export interface AdvisoryVerdict {
  cve: string;
  summary: string;
  status: AdvisoryStatus;
  detail: string;
}

export interface RuntimeSecurityReport {
  runtime: string;
  /** Upstream version as the runtime reports it (`1.1.5`), null when unreadable. */
  version: string | null;
  package: { name: string; version: string } | null;
  advisories: AdvisoryVerdict[];
  /** One sentence per advisory that is not known to be fixed: for the startup log and GET /info. */
  warnings: string[];
}

interface Advisory {
  cve: string;
  summary: string;
  /** First fixed release of each affected line, e.g. ['1.2.8', '1.3.3', '1.4.0-rc.3']. */
  fixedIn: string[];
}

const RUNC_ADVISORIES: readonly Advisory[] = [
  {
    cve: 'CVE-2019-5736',
    summary: 'a container can overwrite the host runc binary through /proc/self/exe',
    fixedIn: ['1.0.0-rc7'],
  },
  {
    cve: 'CVE-2024-21626',
    summary: 'a leaked host file descriptor as working directory gives a container the host filesystem',
    fixedIn: ['1.1.12'],
  },
  {
    cve: 'CVE-2025-31133',
    summary: 'masked paths can be redirected to host files by racing the /dev/null mount',
    fixedIn: ['1.2.8', '1.3.3', '1.4.0-rc.3'],
  },
  {
    cve: 'CVE-2025-52565',
    summary: 'the /dev/console bind mount can be redirected to write host /proc files',
    fixedIn: ['1.2.8', '1.3.3', '1.4.0-rc.3'],
  },
  {
    cve: 'CVE-2025-52881',
    summary: 'writes to /proc can be redirected past LSM labels to arbitrary host /proc files',
    fixedIn: ['1.2.8', '1.3.3', '1.4.0-rc.3'],
  },
];

interface ParsedVersion {
  numbers: [number, number, number];
  /** Release candidate number; Infinity for a final release, so 1.4.0-rc.3 < 1.4.0. */
  rc: number;
}

export function parseRuntimeVersion(text: string): ParsedVersion | undefined {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?(?:-rc\.?(\d+))?/.exec(text.trim());
  if (!match) return undefined;
  return {
    numbers: [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)],
    rc: match[4] === undefined ? Infinity : Number(match[4]),
  };
}

function compare(a: ParsedVersion, b: ParsedVersion): number {
  for (let index = 0; index < 3; index++) {
    const difference = a.numbers[index]! - b.numbers[index]!;
    if (difference !== 0) return difference;
  }
  return a.rc === b.rc ? 0 : a.rc < b.rc ? -1 : 1;
}

/** Fixed when the version is at least the fix of its own line, or newer than every fixed line. */
export function isFixedUpstream(version: ParsedVersion, fixedIn: readonly string[]): boolean {
  const fixes = fixedIn.map((fix) => parseRuntimeVersion(fix)!).sort(compare);
  const newest = fixes.at(-1)!;
  if (compare(version, newest) >= 0) return true;
  const sameLine = fixes.find(
    (fix) => fix.numbers[0] === version.numbers[0] && fix.numbers[1] === version.numbers[1],
  );
  return sameLine !== undefined && compare(version, sameLine) >= 0;
}

export function assessRuntime(facts: RuntimeFacts): RuntimeSecurityReport {
  const firstLine = facts.versionText.split('\n')[0] ?? '';
  const match = /^(\S+) version (\S+)/.exec(firstLine);
  const runtime = match?.[1] ?? facts.binary;
  const versionString = match?.[2] ?? null;
  const version = versionString ? parseRuntimeVersion(versionString) : undefined;
  const pkg = facts.package ? { name: facts.package.name, version: facts.package.version } : null;
  const advisories: AdvisoryVerdict[] = [];
  const warnings: string[] = [];
  for (const advisory of RUNC_ADVISORIES) {
    const verdict = judge(advisory, runtime, versionString, version, facts);
    advisories.push(verdict);
    if (verdict.status === 'vulnerable' || verdict.status === 'unknown') {
      warnings.push(`${advisory.cve} (${advisory.summary}): ${verdict.detail}`);
    }
  }
  return { runtime, version: versionString, package: pkg, advisories, warnings };
}

function judge(
  advisory: Advisory,
  runtime: string,
  versionString: string | null,
  version: ParsedVersion | undefined,
  facts: RuntimeFacts,
): AdvisoryVerdict {
  const base = { cve: advisory.cve, summary: advisory.summary };
  const upstreamFix = `fixed upstream in runc ${advisory.fixedIn.join(', ')}`;
  if (runtime !== 'runc') {
    return {
      ...base,
      status: 'unknown',
      detail:
        `this is a runc advisory and the runtime is ${runtime} ${versionString ?? ''}; check its vendor's advisories`.trim(),
    };
  }
  if (!version) {
    return { ...base, status: 'unknown', detail: `cannot read the runc version (${upstreamFix})` };
  }
  if (isFixedUpstream(version, advisory.fixedIn)) {
    return { ...base, status: 'fixed', detail: `runc ${versionString} includes the fix (${upstreamFix})` };
  }
  const pkg = facts.package;
  if (pkg && pkg.changelog.includes(advisory.cve)) {
    return {
      ...base,
      status: 'fixed-by-distribution',
      detail: `runc ${versionString} predates the fix (${upstreamFix}), but the changelog of package ${pkg.name} ${pkg.version} lists ${advisory.cve} as fixed (a backport)`,
    };
  }
  const packageNote = pkg
    ? pkg.changelog
      ? `, and the changelog of package ${pkg.name} ${pkg.version} does not mention it`
      : `; package ${pkg.name} ${pkg.version} ships no changelog to check for a backport`
    : '';
  return {
    ...base,
    status: 'vulnerable',
    detail: `runc ${versionString} predates the fix (${upstreamFix})${packageNote}: a malicious image or container may escape to the host; upgrade runc`,
  };
}
