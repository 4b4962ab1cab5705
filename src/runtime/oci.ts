/** The parts of the OCI runtime spec (config.json) that runcd reads or writes. */

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  umask?: number;
}

export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

/** The size a terminal starts with when nobody said otherwise (a fresh pty is 0x0). */
export const DEFAULT_CONSOLE_SIZE = { height: 24, width: 80 } as const;

export interface OciProcess {
  terminal?: boolean;
  /** The terminal's size at creation (runc sets it before the process runs; a fresh pty is 0x0). */
  consoleSize?: { height: number; width: number };
  user: OciUser;
  args: string[];
  env?: string[];
  cwd: string;
  capabilities?: Record<string, string[]>;
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  selinuxLabel?: string;
  oomScoreAdj?: number;
}

export interface OciSpec {
  ociVersion: string;
  process?: OciProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: Array<{ destination: string; type?: string; source?: string; options?: string[] }>;
  hooks?: Record<string, unknown>;
  annotations?: Record<string, string>;
  linux?: Record<string, unknown>;
  [key: string]: unknown;
}
