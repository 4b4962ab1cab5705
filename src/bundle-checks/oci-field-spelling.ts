/**
 * runc decodes config.json with Go's encoding/json, which matches object keys to struct fields
 * case-insensitively (and folds `ſ` to `s` and the Kelvin sign to `k`): to runc, `"Hooks"` or `"HOOKS"` is the
 * `hooks` field, while to JavaScript it is an unknown key. A policy that reads `spec.hooks` would wave such a
 * config through. So any key that Go would fold onto an OCI field but that is not spelled exactly like it is
 * refused; keys Go would ignore (unknown fields) are harmless and pass.
 */

/** Every field name of the OCI runtime spec's Linux config (specs-go/config.go). */
// prettier-ignore
const OCI_FIELD_NAMES = [
  // Spec
  'ociVersion', 'process', 'root', 'hostname', 'domainname', 'mounts', 'hooks', 'annotations', 'linux',
  'solaris', 'windows', 'vm', 'zos',
  // Process, User, ConsoleSize, Rlimit, Scheduler, IOPriority, CPU affinity
  'terminal', 'consoleSize', 'height', 'width', 'user', 'uid', 'gid', 'umask', 'additionalGids', 'username',
  'args', 'commandLine', 'env', 'cwd', 'capabilities', 'rlimits', 'noNewPrivileges', 'apparmorProfile',
  'oomScoreAdj', 'selinuxLabel', 'scheduler', 'ioPriority', 'execCPUAffinity', 'initial', 'final', 'class',
  'nice', 'priority', 'flags', 'runtime', 'deadline', 'period', 'policy',
  // Capabilities, rlimits
  'bounding', 'effective', 'inheritable', 'permitted', 'ambient', 'type', 'hard', 'soft',
  // Root, Mount, Hooks
  'path', 'readonly', 'destination', 'source', 'options', 'uidMappings', 'gidMappings', 'prestart',
  'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop', 'timeout',
  // Linux
  'sysctl', 'resources', 'cgroupsPath', 'namespaces', 'devices', 'seccomp', 'rootfsPropagation',
  'maskedPaths', 'readonlyPaths', 'mountLabel', 'intelRdt', 'personality', 'timeOffsets', 'netDevices',
  'memoryPolicy', 'containerID', 'hostID', 'size', 'domain', 'secs', 'nanosecs', 'name', 'mode', 'nodes',
  // Resources
  'memory', 'cpu', 'pids', 'blockIO', 'hugepageLimits', 'network', 'rdma', 'unified', 'allow', 'major',
  'minor', 'access', 'limit', 'reservation', 'swap', 'kernel', 'kernelTCP', 'swappiness', 'disableOOMKiller',
  'useHierarchy', 'checkBeforeUpdate', 'shares', 'quota', 'burst', 'realtimeRuntime', 'realtimePeriod',
  'cpus', 'mems', 'idle', 'weight', 'leafWeight', 'weightDevice', 'throttleReadBpsDevice',
  'throttleWriteBpsDevice', 'throttleReadIOPSDevice', 'throttleWriteIOPSDevice', 'rate', 'classID',
  'priorities', 'pageSize', 'hcaHandles', 'hcaObjects', 'fileMode',
  // Seccomp, Intel RDT
  'defaultAction', 'defaultErrnoRet', 'architectures', 'listenerPath', 'listenerMetadata', 'syscalls',
  'names', 'action', 'errnoRet', 'index', 'value', 'valueTwo', 'op', 'closID', 'l3CacheSchema',
  'memBwSchema', 'schemata', 'enableCMT', 'enableMBM', 'enableMonitoring',
];

/** Go's key folding: case-insensitive, with `ſ` (U+017F) as `s` and `K` (U+212A, lowercased by JS) as `k`. */
function fold(key: string): string {
  return key.toLowerCase().replace(/\u017f/g, 's');
}

const CANONICAL_BY_FOLD = new Map(OCI_FIELD_NAMES.map((name) => [fold(name), name]));

/** Free-form maps: their keys are data, not field names, and Go does not fold them. */
const MAP_FIELDS = new Set(['annotations', 'sysctl', 'unified', 'rdma', 'listenerMetadata']);

export interface MisspelledField {
  path: string;
  key: string;
  canonical: string;
}

/** Finds keys that Go would read as an OCI field spelled differently; `path` names where (`linux.Seccomp`). */
export function findMisspelledFields(value: unknown, path = ''): MisspelledField[] {
  const found: MisspelledField[] = [];
  if (Array.isArray(value)) {
    value.forEach((item, index) => found.push(...findMisspelledFields(item, `${path}[${index}]`)));
    return found;
  }
  if (typeof value !== 'object' || value === null) return found;
  for (const [key, child] of Object.entries(value)) {
    const childPath = path ? `${path}.${key}` : key;
    const canonical = CANONICAL_BY_FOLD.get(fold(key));
    if (canonical !== undefined && canonical !== key) found.push({ path: childPath, key, canonical });
    if (!MAP_FIELDS.has(canonical ?? key)) found.push(...findMisspelledFields(child, childPath));
  }
  return found;
}
