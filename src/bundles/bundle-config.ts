import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { BundlePolicy } from '../bundle-checks/bundle-policy.js';
import { InvalidInputError } from '../errors.js';
import { hostRlimits } from '../runtime/host-limits.js';
import type { OciSpec } from '../runtime/oci.js';
import type { Runc } from '../runtime/runc.js';
import type { BundleSpec } from '../schemas/bundle.js';
import { generateConfig } from './config-generator.js';
import { findExecutable } from './rootfs-lookup.js';

/**
 * The config.json of a managed bundle: generated from `runc spec`'s defaults and the caller's fields, checked by
 * the bundle policy before anything is written, written once with its digest (the container service refuses a
 * bundle whose file no longer matches), and the command looked up in the rootfs as runc will look it up.
 */
export class BundleConfigs {
  private defaults: Promise<OciSpec> | undefined;

  constructor(private readonly deps: { runc: Runc; policy: BundlePolicy; initBinary: string }) {}

  /** config.json for `spec` in bundle `dir` (hostname `name`), its rootfs at `rootPath`, policy applied. */
  async generate(name: string, spec: BundleSpec, dir: string, rootPath: string): Promise<OciSpec> {
    if (spec.init) await this.requireInit();
    // runc spec once per daemon; a failed call is retried by the next bundle.
    this.defaults ??= this.deps.runc.spec().catch((error: unknown) => {
      this.defaults = undefined;
      throw error;
    });
    const config = generateConfig(await this.defaults, spec, {
      bundleId: name,
      rootPath,
      initBinary: this.deps.initBinary,
      hostLimits: hostRlimits(),
    });
    await this.deps.policy.apply(config, dir, name, {
      sharedRootfs: isAbsolute(rootPath) ? rootPath : undefined,
    });
    return config;
  }

  /** args[0] looked up in the rootfs as runc will, so a missing command is a 400 now, not a 422 from runc. */
  async checkExecutable(id: string, spec: BundleSpec, config: OciSpec, rootfs: string): Promise<void> {
    // The caller's command, not the init in front of it; PATH and cwd as the generated config has them.
    const command = spec.process.args[0]!;
    const lookup = await findExecutable(rootfs, command, config.process?.env, config.process?.cwd ?? '/');
    if (!lookup.found) {
      throw new InvalidInputError(
        'executable_not_found',
        command.includes('/')
          ? `exec: "${command}": no such executable file in the rootfs of bundle "${id}" (looked for ${lookup.searched})`
          : `exec: "${command}": executable file not found in $PATH (searched PATH=${lookup.searched} in the rootfs of bundle "${id}")`,
      );
    }
  }

  private async requireInit(): Promise<void> {
    try {
      await access(this.deps.initBinary, constants.X_OK);
    } catch {
      throw new InvalidInputError(
        'init_not_available',
        `init: true needs ${this.deps.initBinary} on the host, which is missing; install it with: apt-get install -y tini`,
      );
    }
  }
}

/** Writes `dir/config.json` (0600, never over an existing one) and answers its digest. */
export async function writeConfig(dir: string, config: OciSpec): Promise<string> {
  const bytes = Buffer.from(JSON.stringify(config, null, 2) + '\n');
  await writeFile(join(dir, 'config.json'), bytes, { mode: 0o600, flag: 'wx' });
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

/** A managed bundle's config.json; one that no longer parses is caught by the digest check at create. */
export async function readConfig(dir: string): Promise<OciSpec> {
  try {
    return JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as OciSpec;
  } catch {
    return { ociVersion: '' };
  }
}
