/**
 * A config.json as tests edit it: the fields they poke at are typed, everything else is open, because the point
 * of many tests is to write nonsense into it.
 */
export interface EditableSpec {
  process: {
    cwd: unknown;
    noNewPrivileges: unknown;
    terminal: unknown;
    capabilities: Record<string, unknown> & { bounding: string[]; effective: string[] };
  } & Record<string, unknown>;
  root: { path: string } & Record<string, unknown>;
  mounts: unknown[];
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    resources: { devices: unknown[] };
  } & Record<string, unknown>;
  [key: string]: unknown;
}
