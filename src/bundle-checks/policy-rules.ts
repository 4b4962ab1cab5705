import { z } from 'zod';
import type { CodeOfKind } from '../error-catalog.js';

/**
 * The bundle policy's rules, said once. Each rule is one field of the `--policy FILE` document (its zod schema
 * and description come from here, so the file format and its documentation cannot drift from the rules), has
 * a strict default, a line for the startup log when a policy relaxes it, and the code its check refuses with.
 * bundle-policy.ts holds the checks; a unit test relaxes each rule in turn and sees its check let go.
 */

export const REQUIRED_NAMESPACES = ['pid', 'mount', 'ipc', 'uts', 'network'] as const;

const absoluteDir = z.string().startsWith('/', 'must be an absolute path');

interface RuleDefinition<S extends z.ZodType> {
  schema: S;
  description: string;
  default: z.infer<S>;
  /** The startup log line when a policy sets this rule to something other than its default; none otherwise. */
  relaxation: (value: z.infer<S>) => string | undefined;
  /** What the check refuses with while the rule holds; null for a rule that adds to the config instead. */
  refusal: CodeOfKind<'policy_denied'> | null;
}

const rule = <S extends z.ZodType>(definition: RuleDefinition<S>): RuleDefinition<S> => definition;
const when = (text: string) => (value: boolean) => (value ? text : undefined);
const whenAny = (describe: (values: string[]) => string) => (values: string[]) =>
  values.length > 0 ? describe(values) : undefined;

export const POLICY_RULES = {
  allowHooks: rule({
    schema: z.boolean(),
    description: 'Allow OCI hooks (they run on the host as root)',
    default: false,
    relaxation: when('allowHooks: OCI hooks are allowed; they run on the host as root'),
    refusal: 'policy_hooks',
  }),
  allowRootfsOutsideBundle: rule({
    schema: z.boolean(),
    description: 'Allow root.path to be absolute or to leave the bundle',
    default: false,
    relaxation: when('allowRootfsOutsideBundle: root.path may point outside the bundle'),
    refusal: 'policy_root_path',
  }),
  allowMountSources: rule({
    schema: z.array(absoluteDir),
    description: 'Host directories bind mounts may come from',
    default: [],
    relaxation: whenAny((dirs) => `allowMountSources: bind mounts may come from ${dirs.join(', ')}`),
    refusal: 'policy_mount_source',
  }),
  allowMountTypes: rule({
    schema: z.array(z.string().regex(/^[a-z0-9._-]{1,32}$/, 'must be a filesystem type such as "overlay"')),
    description:
      'Filesystem types allowed besides proc, sysfs, tmpfs, devpts, mqueue, cgroup, cgroup2 and bind',
    default: [],
    relaxation: whenAny((types) => `allowMountTypes: also ${types.join(', ')}`),
    refusal: 'policy_mount_type',
  }),
  allowMissingNamespaces: rule({
    schema: z.array(z.enum(REQUIRED_NAMESPACES)),
    description: 'Namespaces a container may share with the host (each one missing from linux.namespaces)',
    default: [],
    relaxation: whenAny((names) => `allowMissingNamespaces: may share the host's ${names.join(', ')}`),
    refusal: 'policy_namespace',
  }),
  allowNamespaceJoins: rule({
    schema: z.boolean(),
    description: 'Allow linux.namespaces[].path',
    default: false,
    relaxation: when('allowNamespaceJoins: linux.namespaces[].path may join namespaces'),
    refusal: 'policy_namespace',
  }),
  allowCapabilities: rule({
    schema: z.array(
      z.string().regex(/^CAP_[A-Z_]{2,32}$/, 'must be a capability name such as CAP_SYS_PTRACE'),
    ),
    description: "Capabilities allowed beyond Docker's default set",
    default: [],
    relaxation: whenAny((caps) => `allowCapabilities: also ${caps.join(', ')}`),
    refusal: 'policy_capability',
  }),
  allowAllDevices: rule({
    schema: z.boolean(),
    description: 'Allow a device cgroup rule granting every device',
    default: false,
    relaxation: when('allowAllDevices: a device rule may grant every device'),
    refusal: 'policy_devices',
  }),
  allowNewPrivileges: rule({
    schema: z.boolean(),
    description: 'Allow process.noNewPrivileges to be false or absent',
    default: false,
    relaxation: when('allowNewPrivileges: noNewPrivileges may be false'),
    refusal: 'policy_no_new_privileges',
  }),
  missingSeccomp: rule({
    schema: z.enum(['add-default', 'refuse', 'allow']),
    description: 'What to do with a config.json without linux.seccomp (default: add-default)',
    default: 'add-default',
    relaxation: (value) =>
      value === 'allow' ? 'missingSeccomp=allow: a config without seccomp runs unfiltered' : undefined,
    refusal: 'policy_seccomp',
  }),
  allowCgroupsPath: rule({
    schema: z.boolean(),
    description: 'Allow linux.cgroupsPath',
    default: false,
    relaxation: when('allowCgroupsPath: linux.cgroupsPath may choose any cgroup'),
    refusal: 'policy_cgroups_path',
  }),
  allowUnmaskedPaths: rule({
    schema: z.boolean(),
    description: 'Do not add the standard linux.maskedPaths and linux.readonlyPaths',
    default: false,
    relaxation: when('allowUnmaskedPaths: the standard masked /proc paths are not added'),
    refusal: null,
  }),
  allowKernelFsCwd: rule({
    schema: z.boolean(),
    description: 'Allow a working directory under /proc, /sys or /dev',
    default: false,
    relaxation: when('allowKernelFsCwd: cwd may be under /proc, /sys or /dev'),
    refusal: 'policy_cwd',
  }),
};

export type PolicyRuleName = keyof typeof POLICY_RULES;

export type BundlePolicyRules = {
  -readonly [K in PolicyRuleName]: z.infer<(typeof POLICY_RULES)[K]['schema']>;
};

const ruleNames = Object.keys(POLICY_RULES) as PolicyRuleName[];

export const DEFAULT_POLICY_RULES: Readonly<BundlePolicyRules> = Object.fromEntries(
  ruleNames.map((name) => [name, POLICY_RULES[name].default]),
) as BundlePolicyRules;

/** One line per rule `rules` relaxes, for the startup log. */
export function relaxationsOf(rules: Readonly<BundlePolicyRules>): string[] {
  return ruleNames.flatMap((name) => {
    const line = (POLICY_RULES[name].relaxation as (value: unknown) => string | undefined)(rules[name]);
    return line === undefined ? [] : [line];
  });
}

/**
 * The `--policy FILE` document: each field relaxes one rule for trusted callers; absent fields keep the strict
 * default. Unknown fields are an error, so a typo never silently keeps a rule on.
 */
export const PolicyFile = z
  .object(
    Object.fromEntries(
      ruleNames.map((name) => [
        name,
        POLICY_RULES[name].schema.optional().describe(POLICY_RULES[name].description),
      ]),
    ) as { [K in PolicyRuleName]: z.ZodOptional<(typeof POLICY_RULES)[K]['schema']> },
  )
  .strict();
export type PolicyFile = z.infer<typeof PolicyFile>;
