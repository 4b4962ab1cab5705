import { readFile } from 'node:fs/promises';
import type { CodeOfKind } from '../error-catalog.js';
import { InvalidInputError, PolicyDeniedError } from '../errors.js';
import type { OciProcess, OciSpec } from '../runtime/oci.js';
import {
  DEFAULT_POLICY_RULES,
  PolicyFile,
  relaxationsOf,
  REQUIRED_NAMESPACES,
  type BundlePolicyRules,
} from './policy-rules.js';

export { DEFAULT_POLICY_RULES, type BundlePolicyRules } from './policy-rules.js';
import { defaultSeccompProfile } from './default-seccomp.js';
import { FilesystemChecks, type Deny, type Report, type RuncdProvided } from './filesystem-checks.js';
import { isObject, isStringArray, normalizeAbsolute } from './spec-values.js';

export type { RuncdProvided } from './filesystem-checks.js';

/**
 * What a caller's config.json may ask for. runcd runs every container as root on the host, so the defaults
 * refuse what would let a container reach the host: hooks (host programs run as root), a rootfs outside the
 * bundle, bind mounts of host paths, missing or joined namespaces, capabilities beyond Docker's default set,
 * device access to everything, privilege gain through setuid binaries, a working directory in /proc, /sys or
 * /dev (the CVE-2024-21626 pattern), and a caller-chosen cgroup. A server-side `--policy FILE` relaxes single
 * rules for trusted callers; each relaxation is listed by `relaxations()` and logged at startup.
 *
 * `apply` returns the config runc will run: the caller's, with root.path and bind sources made absolute (runc
 * reads runcd's own copy, from another directory), runcd's default seccomp profile added when there is none,
 * and the standard masked and read-only /proc paths added when missing.
 */

/** Docker's default capability set (moby oci/caps/defaults.go). `runc spec` grants a subset of it. */
export const DOCKER_DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_AUDIT_WRITE',
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_MKNOD',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_RAW',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];

/** What `runc spec` and Docker mask and make read-only; without them root in the container could, for
 * example, write /proc/sys/kernel/core_pattern or /proc/sysrq-trigger, which are the host's. */
const DEFAULT_MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
];
const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** No working directory in these trees (the CVE-2024-21626 pattern). */
const KERNEL_TREES_FOR_CWD = ['/proc', '/sys', '/dev'];

export interface ApplyOptions {
  /** A private bundle's root.path may name this other bundle's rootfs (an absolute path runcd chose). */
  sharedRootfs?: string | undefined;
}

export interface ProtectedPaths {
  /** runcd's state dir: database, tokens, audit log, exit files. Never mountable (bundle roots inside it are). */
  stateDir?: string;
  /** Other paths never mountable (the runtime root, the socket). */
  others?: string[];
}

type Violation = {
  field: string;
  message: string;
} & ({ status: 400; code: 'bundle_invalid_config' } | { status: 403; code: PolicyCode });

/** The codes the policy refuses with (one per rule). */
export type PolicyCode = CodeOfKind<'policy_denied'>;

export interface PolicyOutcome {
  /** The config runc will run. */
  spec: OciSpec;
  /** Absolute path of the checked rootfs. */
  rootfs: string;
}

export class PolicyFileError extends Error {
  override name = 'PolicyFileError';
}

/** Reads and validates a `--policy FILE`; errors name the file and the field. */
export async function loadPolicyFile(path: string): Promise<Partial<BundlePolicyRules>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new PolicyFileError(`--policy ${path}: cannot read it: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new PolicyFileError(`--policy ${path}: not valid JSON: ${(error as Error).message}`);
  }
  const parsed = PolicyFile.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((issue) => `${issue.path.join('.') || '(document)'}: ${issue.message}`)
      .join('; ');
    throw new PolicyFileError(`--policy ${path}: ${issues}`);
  }
  return parsed.data;
}

export class BundlePolicy {
  readonly rules: Readonly<BundlePolicyRules>;
  private readonly filesystem: FilesystemChecks;

  constructor(
    rules: Partial<BundlePolicyRules> = {},
    protectedPaths: ProtectedPaths = {},
    provided: RuncdProvided = {},
  ) {
    this.rules = { ...DEFAULT_POLICY_RULES, ...withoutUndefined(rules) };
    this.filesystem = new FilesystemChecks(this.rules, protectedPaths, provided);
  }

  /** One line per rule this policy relaxes, for the startup log. */
  relaxations(): string[] {
    return relaxationsOf(this.rules);
  }

  /**
   * Checks a parsed config.json from the bundle at `bundleDir` (already resolved, inside a bundle root) and
   * returns the config runc will run. Structural errors are a 400 (`bundle_invalid_config`); refusals a 403
   * whose detail names each offending field.
   */
  async apply(
    input: OciSpec,
    bundleDir: string,
    bundleLabel: string,
    options: ApplyOptions = {},
  ): Promise<PolicyOutcome> {
    const spec = structuredClone(input);
    const violations: Violation[] = [];
    const invalid = (field: string, message: string) =>
      violations.push({ status: 400, code: 'bundle_invalid_config', field, message });
    const deny = (code: PolicyCode, field: string, message: string) =>
      violations.push({ status: 403, code, field, message });

    this.checkHooks(spec, invalid, deny);
    const rootfs = await this.filesystem.checkRoot(spec, bundleDir, invalid, deny, options.sharedRootfs);
    await this.filesystem.checkMounts(spec, bundleDir, invalid, deny);
    const linux = spec.linux;
    if (linux !== undefined && !isObject(linux)) invalid('linux', 'must be an object');
    const linuxObject: Record<string, unknown> = isObject(linux) ? linux : {};
    this.checkNamespaces(linuxObject, invalid, deny);
    this.checkProcess(spec, invalid, deny);
    this.checkDevices(linuxObject, invalid, deny);
    this.checkCgroupsPath(linuxObject, deny);
    this.applySeccomp(linuxObject, invalid, deny);
    this.applyMaskedPaths(linuxObject, invalid);

    const invalidOnes = violations.filter((violation) => violation.status === 400);
    const reported = invalidOnes.length > 0 ? invalidOnes : violations;
    if (reported.length > 0) {
      const detail = reported.map((violation) => `${violation.field}: ${violation.message}`).join('; ');
      const first = reported[0]!;
      if (first.status === 400) {
        throw new InvalidInputError(
          first.code,
          `config.json in bundle "${bundleLabel}" is invalid: ${detail}`,
        );
      }
      throw new PolicyDeniedError(
        first.code,
        `config.json in bundle "${bundleLabel}" is refused by policy: ${detail}`,
      );
    }
    if (spec.linux === undefined && Object.keys(linuxObject).length > 0) spec.linux = linuxObject;
    return { spec, rootfs };
  }

  /** The rules that apply to a process runcd builds for exec (its template was checked at create). */
  checkExecProcess(process: OciProcess): void {
    const reason = this.cwdProblem(process.cwd);
    if (reason) throw new PolicyDeniedError('policy_cwd', `cwd: ${reason}`);
  }

  private checkHooks(spec: OciSpec, invalid: Report, deny: Deny): void {
    const hooks: unknown = spec.hooks;
    if (hooks === undefined || hooks === null) return;
    if (!isObject(hooks)) return invalid('hooks', 'must be an object');
    for (const [stage, list] of Object.entries(hooks)) {
      const present = Array.isArray(list) ? list.length > 0 : list !== null && list !== undefined;
      if (present && !this.rules.allowHooks) {
        deny('policy_hooks', `hooks.${stage}`, 'hooks run programs on the host as root and are not allowed');
      }
    }
  }

  private checkNamespaces(linux: Record<string, unknown>, invalid: Report, deny: Deny): void {
    const namespaces = linux.namespaces ?? [];
    if (!Array.isArray(namespaces)) return invalid('linux.namespaces', 'must be an array');
    const types = new Set<string>();
    for (const [index, namespace] of namespaces.entries()) {
      if (!isObject(namespace) || typeof namespace.type !== 'string') {
        invalid(`linux.namespaces[${index}]`, 'must be an object with a type');
        continue;
      }
      types.add(namespace.type);
      const path = namespace.path;
      if (path !== undefined && path !== null && path !== '' && !this.rules.allowNamespaceJoins) {
        deny(
          'policy_namespace',
          `linux.namespaces[${index}].path`,
          `joining an existing ${namespace.type} namespace (${String(path)}) is not allowed`,
        );
      }
    }
    for (const required of REQUIRED_NAMESPACES) {
      if (!types.has(required) && !this.rules.allowMissingNamespaces.includes(required)) {
        deny('policy_namespace', 'linux.namespaces', `the ${required} namespace is required`);
      }
    }
  }

  private checkProcess(spec: OciSpec, invalid: Report, deny: Deny): void {
    const process: unknown = spec.process;
    if (!isObject(process)) return; // the inspector reports a missing process
    const capabilities = process.capabilities;
    if (capabilities !== undefined && capabilities !== null) {
      if (!isObject(capabilities)) {
        invalid('process.capabilities', 'must be an object');
      } else {
        const allowed = new Set([...DOCKER_DEFAULT_CAPABILITIES, ...this.rules.allowCapabilities]);
        for (const [set, list] of Object.entries(capabilities)) {
          if (list === null || list === undefined) continue;
          if (!isStringArray(list)) {
            invalid(`process.capabilities.${set}`, 'must be an array of strings');
            continue;
          }
          const beyond = list.filter((name) => !allowed.has(canonicalCapability(name)));
          if (beyond.length > 0) {
            deny(
              'policy_capability',
              `process.capabilities.${set}`,
              `${beyond.join(', ')} ${beyond.length === 1 ? 'is' : 'are'} beyond Docker's default capability set`,
            );
          }
        }
      }
    }
    const cwd = process.cwd;
    if (typeof cwd !== 'string') {
      invalid('process.cwd', 'must be a string');
    } else {
      const reason = this.cwdProblem(cwd);
      if (reason) deny('policy_cwd', 'process.cwd', reason);
    }
    if (process.noNewPrivileges !== true && !this.rules.allowNewPrivileges) {
      deny(
        'policy_no_new_privileges',
        'process.noNewPrivileges',
        'must be true, or setuid programs in the rootfs could regain privileges',
      );
    }
  }

  private cwdProblem(cwd: string): string | undefined {
    if (!cwd.startsWith('/')) return `"${cwd}" is relative; it must be an absolute path`;
    if (this.rules.allowKernelFsCwd) return undefined;
    const normal = normalizeAbsolute(cwd);
    const tree = KERNEL_TREES_FOR_CWD.find((dir) => normal === dir || normal.startsWith(dir + '/'));
    return tree ? `"${cwd}" is under ${tree}; a working directory there can reach the host` : undefined;
  }

  private checkDevices(linux: Record<string, unknown>, invalid: Report, deny: Deny): void {
    const resources = linux.resources;
    if (!isObject(resources)) return;
    const devices = resources.devices;
    if (devices === undefined || devices === null) return;
    if (!Array.isArray(devices)) return invalid('linux.resources.devices', 'must be an array');
    for (const [index, rule] of devices.entries()) {
      if (!isObject(rule)) {
        invalid(`linux.resources.devices[${index}]`, 'must be an object');
        continue;
      }
      const wildcard = (value: unknown) => value === undefined || value === null || value === -1;
      const everyDevice =
        (rule.type === undefined || rule.type === null || rule.type === 'a') &&
        wildcard(rule.major) &&
        wildcard(rule.minor);
      if (rule.allow === true && everyDevice && !this.rules.allowAllDevices) {
        const access = typeof rule.access === 'string' && rule.access !== '' ? rule.access : 'rwm';
        deny('policy_devices', `linux.resources.devices[${index}]`, `grants "${access}" on every device`);
      }
    }
  }

  private checkCgroupsPath(linux: Record<string, unknown>, deny: Deny): void {
    const path = linux.cgroupsPath;
    if (path === undefined || path === null || path === '' || this.rules.allowCgroupsPath) return;
    deny(
      'policy_cgroups_path',
      'linux.cgroupsPath',
      "choosing the cgroup is not allowed: an existing host cgroup would be shared with (and killed by) the container's runtime",
    );
  }

  private applySeccomp(linux: Record<string, unknown>, invalid: Report, deny: Deny): void {
    const seccomp = linux.seccomp;
    if (seccomp !== undefined && seccomp !== null) {
      if (!isObject(seccomp)) invalid('linux.seccomp', 'must be an object');
      return;
    }
    if (this.rules.missingSeccomp === 'refuse') {
      deny('policy_seccomp', 'linux.seccomp', 'a seccomp profile is required');
    } else if (this.rules.missingSeccomp === 'add-default') {
      linux.seccomp = defaultSeccompProfile();
    }
  }

  private applyMaskedPaths(linux: Record<string, unknown>, invalid: Report): void {
    for (const [field, defaults] of [
      ['maskedPaths', DEFAULT_MASKED_PATHS],
      ['readonlyPaths', DEFAULT_READONLY_PATHS],
    ] as const) {
      const current = linux[field] ?? [];
      if (!isStringArray(current)) {
        invalid(`linux.${field}`, 'must be an array of strings');
        continue;
      }
      if (this.rules.allowUnmaskedPaths) continue;
      linux[field] = [...current, ...defaults.filter((path) => !current.includes(path))];
    }
  }
}

/** runc only knows upper-case `CAP_` names; anything else is judged by the capability it resembles. */
function canonicalCapability(name: string): string {
  const upper = name.toUpperCase();
  return upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as Partial<T>;
}
