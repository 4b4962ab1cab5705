/**
 * The seccomp profile runcd adds to a config.json that has none (`runc spec` emits none, so the seed's bundles
 * would otherwise run unfiltered). Docker's default profile is an allowlist of some 350 syscalls tied to kernel
 * and libc versions; this one is the opposite, and small enough to read: allow everything, and refuse with EPERM
 * the syscalls Docker's profile refuses that matter for a root-in-container process: kernel modules and kexec,
 * the mount API, namespace creation and joining (including clone with a CLONE_NEW* flag), keyrings, BPF,
 * perf, userfaultfd, io_uring, raw I/O ports, clock and swap control, reboot. Most of these already need a
 * capability Docker's default set does not grant; the filter is the second wall behind the capability check, as
 * it is in Docker. A config.json that brings its own profile keeps it.
 */

const EPERM = 1;
const ENOSYS = 38;

/** The CLONE_NEW* flags: clone with any of them would create a namespace, which `unshare` is refused above. */
const CLONE_NAMESPACE_FLAGS = [
  0x00020000, // CLONE_NEWNS
  0x02000000, // CLONE_NEWCGROUP
  0x04000000, // CLONE_NEWUTS
  0x08000000, // CLONE_NEWIPC
  0x10000000, // CLONE_NEWUSER
  0x20000000, // CLONE_NEWPID
  0x40000000, // CLONE_NEWNET
];

const REFUSED_SYSCALLS = [
  'acct',
  'add_key',
  'bpf',
  'clock_adjtime',
  'clock_settime',
  'create_module',
  'delete_module',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'get_kernel_syms',
  'init_module',
  'io_uring_enter',
  'io_uring_register',
  'io_uring_setup',
  'ioperm',
  'iopl',
  'kcmp',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mount',
  'mount_setattr',
  'move_mount',
  'name_to_handle_at',
  'nfsservctl',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pivot_root',
  'query_module',
  'quotactl',
  'quotactl_fd',
  'reboot',
  'request_key',
  'setns',
  'settimeofday',
  'stime',
  'swapoff',
  'swapon',
  'syslog',
  '_sysctl',
  'umount',
  'umount2',
  'unshare',
  'uselib',
  'userfaultfd',
  'ustat',
  'vm86',
  'vm86old',
];

/** The architectures whose syscalls a process on this host can make (32-bit compat included). */
function architectures(): string[] {
  switch (process.arch) {
    case 'x64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    default:
      return [];
  }
}

export interface SeccompProfile {
  defaultAction: string;
  architectures: string[];
  syscalls: Array<{
    names: string[];
    action: string;
    errnoRet: number;
    args?: Array<{ index: number; value: number; valueTwo: number; op: string }>;
  }>;
}

/** A fresh copy each time, so one container's config can never alias another's. */
export function defaultSeccompProfile(): SeccompProfile {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: architectures(),
    syscalls: [
      // runc skips names the kernel or an architecture does not know, so one list serves every host.
      { names: [...REFUSED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      ...CLONE_NAMESPACE_FLAGS.map((flag) => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      })),
      // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back to clone (as Docker).
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}
