import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Conmon } from '../runtime/conmon.js';
import type { OciSpec } from '../runtime/oci.js';

/**
 * The config.json runc actually runs: runcd's own checked copy, written at the first create into conmon's
 * per-container bundle directory and reused by every restart. The caller's bundle may have changed since it was
 * checked, so exec's process template, `runc update`'s persisted limits and `docker inspect` all read this one.
 */
export class RunningConfig {
  constructor(private readonly conmon: Pick<Conmon, 'filesFor'>) {}

  /** undefined when runcd has no copy (a container adopted from another runc user). */
  async read(id: string): Promise<OciSpec | undefined> {
    const text = await readFile(this.conmon.filesFor(id).bundleConfig, 'utf8').catch(() => undefined);
    return text === undefined ? undefined : (JSON.parse(text) as OciSpec);
  }

  /** Atomic: runc reads the file on a restart, and must never see half of it. */
  async replace(id: string, spec: OciSpec): Promise<void> {
    const path = this.conmon.filesFor(id).bundleConfig;
    await writeFile(`${path}.new`, JSON.stringify(spec, null, 2) + '\n', { mode: 0o600 });
    await rename(`${path}.new`, path);
  }
}
