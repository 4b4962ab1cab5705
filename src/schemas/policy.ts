import { z } from 'zod';

/**
 * The `--policy FILE` document: each field relaxes one rule of the bundle policy for trusted callers. Absent
 * fields keep the default (strict) rule. Unknown fields are an error, so a typo never silently keeps a rule on.
 */

export const REQUIRED_NAMESPACES = ['pid', 'mount', 'ipc', 'uts', 'network'] as const;

const absoluteDir = z.string().startsWith('/', 'must be an absolute path');

export const PolicyFile = z
  .object({
    allowHooks: z.boolean().optional().describe('Allow OCI hooks (they run on the host as root)'),
    allowRootfsOutsideBundle: z
      .boolean()
      .optional()
      .describe('Allow root.path to be absolute or to leave the bundle'),
    allowMountSources: z.array(absoluteDir).optional().describe('Host directories bind mounts may come from'),
    allowMountTypes: z
      .array(z.string().regex(/^[a-z0-9._-]{1,32}$/, 'must be a filesystem type such as "overlay"'))
      .optional()
      .describe(
        'Filesystem types allowed besides proc, sysfs, tmpfs, devpts, mqueue, cgroup, cgroup2 and bind',
      ),
    allowMissingNamespaces: z.array(z.enum(REQUIRED_NAMESPACES)).optional(),
    allowNamespaceJoins: z.boolean().optional().describe('Allow linux.namespaces[].path'),
    allowCapabilities: z
      .array(z.string().regex(/^CAP_[A-Z_]{2,32}$/, 'must be a capability name such as CAP_SYS_PTRACE'))
      .optional()
      .describe("Capabilities allowed beyond Docker's default set"),
    allowAllDevices: z.boolean().optional().describe('Allow a device cgroup rule granting every device'),
    allowNewPrivileges: z
      .boolean()
      .optional()
      .describe('Allow process.noNewPrivileges to be false or absent'),
    missingSeccomp: z
      .enum(['add-default', 'refuse', 'allow'])
      .optional()
      .describe('What to do with a config.json without linux.seccomp (default: add-default)'),
    allowCgroupsPath: z.boolean().optional().describe('Allow linux.cgroupsPath'),
    allowUnmaskedPaths: z
      .boolean()
      .optional()
      .describe('Do not add the standard linux.maskedPaths and linux.readonlyPaths'),
    allowKernelFsCwd: z.boolean().optional().describe('Allow a working directory under /proc, /sys or /dev'),
  })
  .strict();
export type PolicyFile = z.infer<typeof PolicyFile>;
