import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import {
  access,
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rename,
  stat,
  writeFile,
} from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { isAbsolute, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import {
  ConflictError,
  ContentTooLargeError,
  DomainError,
  InvalidInputError,
  NotFoundError,
} from '../errors.js';
import type { BundlePolicy } from '../bundle-checks/bundle-policy.js';
import type { ContainerService } from '../lifecycle/container-service.js';
import { KeyedMutex } from '../lifecycle/keyed-mutex.js';
import { hostRlimits } from '../runtime/host-limits.js';
import type { OciSpec } from '../runtime/oci.js';
import type { Runc } from '../runtime/runc.js';
import type {
  Bundle,
  BundleDetail,
  BundleSpec,
  CreateBundleBody,
  CreateContainerRequest,
  ResourceLimits,
  RootfsUploadResult,
} from '../schemas/bundle.js';
import type { Container } from '../schemas/container.js';
import type { BundleRecord, BundleRepository } from '../store/bundle-repository.js';
import { generateConfig } from './config-generator.js';
import { importTree } from './rootfs-import.js';
import { findExecutable } from './rootfs-lookup.js';
import { discardTree, RootfsEntryError, RootfsQuotaError, RootfsWriter } from './rootfs-writer.js';
import { extractTarball } from './tar-extractor.js';

export interface BundleServiceDeps {
  repository: BundleRepository;
  containers: ContainerService;
  runc: Runc;
  policy: BundlePolicy;
  /** Managed bundles live in BUNDLE_ROOT/ID (the first --bundle-root). */
  bundleRoot: string;
  /** `--import-root`: the only places `rootfs.path` may copy from. */
  importRoots: readonly string[];
  /** `--max-rootfs-bytes`: bytes of regular files in one rootfs. */
  maxRootfsBytes: number;
  /** tini's static build; `init: true` needs it. */
  initBinary: string;
  logger: Logger;
}

/** Entries in one rootfs: a bound on inodes, which a quota on bytes alone does not give. */
export const MAX_ROOTFS_ENTRIES = 500_000;
/** tar headers and padding: an archive may be this much larger than the bytes it holds, plus a slack. */
const ARCHIVE_OVERHEAD_FACTOR = 2;
const ARCHIVE_SLACK_BYTES = 16 * 1024 * 1024;
const TEMP_PREFIX = '.rootfs-';
/** Scratch directories in the bundle root; bundle ids start with a letter or digit, so none is ever a bundle. */
const SCRATCH_PREFIX = '.scratch-';

/**
 * Bundles runcd makes and owns, so a remote caller never writes to the host: POST /bundles generates config.json
 * from `runc spec` and the caller's fields, the rootfs is copied from an import root or streamed in as a tarball,
 * and metadata (with the digest of the config.json written) lives in the store. Also resolves the managed forms
 * of POST /containers to a bundle path before handing over to ContainerService, and removes private bundles
 * when their container is deleted.
 *
 * Bundle directories are 0700: a rootfs may hold setuid files (and containers run with noNewPrivileges), and no
 * host user must be able to reach them.
 */
export class BundleService {
  private readonly locks = new KeyedMutex();
  private defaults: Promise<OciSpec> | undefined;
  private root: string;
  private importRoots: string[] = [];
  private unsubscribe: (() => void) | undefined;
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly deps: BundleServiceDeps) {
    this.root = deps.bundleRoot;
  }

  /** Resolves roots, forgets links to containers that are gone, removes orphaned private bundles and temp dirs. */
  async init(): Promise<void> {
    await mkdir(this.deps.bundleRoot, { recursive: true, mode: 0o755 });
    this.root = await realpath(this.deps.bundleRoot);
    this.importRoots = await Promise.all(this.deps.importRoots.map((dir) => realpath(dir).catch(() => dir)));
    for (const name of await readdir(this.root)) {
      if (name.startsWith(SCRATCH_PREFIX)) await discardTree(join(this.root, name));
    }
    this.unsubscribe = this.deps.containers.events.subscribe((event) => {
      if (event.type !== 'delete') return;
      const removal = this.containerDeleted(event.id).finally(() => this.pending.delete(removal));
      this.pending.add(removal);
    });
    const existing = new Set(this.deps.containers.list().map((container) => container.id));
    for (const link of this.deps.repository.links()) {
      if (!existing.has(link.containerId)) this.deps.repository.unlinkContainer(link.containerId);
    }
    for (const record of this.deps.repository.all()) {
      if (record.privateTo !== null && !existing.has(record.privateTo)) {
        await this.removeBundle(record);
        continue;
      }
      for (const name of await readdir(record.path).catch(() => [])) {
        if (name.startsWith(TEMP_PREFIX)) await discardTree(join(record.path, name));
      }
    }
  }

  /** Stops listening and lets private-bundle removals already under way finish (they use the store). */
  async close(): Promise<void> {
    this.unsubscribe?.();
    await Promise.allSettled([...this.pending]);
  }

  list(): Bundle[] {
    return this.deps.repository.all().map((record) => this.toBundle(record));
  }

  async get(id: string): Promise<BundleDetail> {
    const record = this.require(id);
    return { ...this.toBundle(record), config: await readConfig(record.path) };
  }

  async create(body: CreateBundleBody): Promise<Bundle> {
    const { id: requestedId, rootfs, labels, ...spec } = body;
    this.checkSpec(spec);
    const importSource = rootfs.path !== undefined ? await this.importSource(rootfs.path) : undefined;
    return this.createBundle(requestedId, spec, labels, importSource, { checkExecutable: true });
  }

  /**
   * A bundle whose rootfs is copied from a directory runcd unpacked itself into one of its scratch directories
   * (`docker load`), through the same RootfsWriter rules and quota as an import. The command is not looked up:
   * an image's default command is checked when a container is made from it, as Docker does.
   */
  async createFromUnpacked(
    body: Omit<CreateBundleBody, 'rootfs'>,
    unpackedRootfs: string,
    scratchDir: string,
  ): Promise<Bundle> {
    const { id: requestedId, labels, ...spec } = body;
    this.checkSpec(spec);
    const root = await realpath(scratchDir);
    if (!root.startsWith(this.root + sep + SCRATCH_PREFIX)) {
      throw new Error(`${scratchDir} is not a scratch directory of the bundle root`);
    }
    return this.createBundle(
      requestedId,
      spec,
      labels,
      { path: await realpath(unpackedRootfs), root },
      { checkExecutable: false, rootfsSource: 'upload' },
    );
  }

  /** A private (0700) directory in the bundle root for work on untrusted input; removed at the next start. */
  async scratchDirectory(purpose: string): Promise<string> {
    return mkdtemp(join(this.root, `${SCRATCH_PREFIX}${purpose}-`));
  }

  /** What an archive for this bundle root may weigh: the rootfs quota, twice, plus tar headers. */
  get maxArchiveBytes(): number {
    return this.deps.maxRootfsBytes * ARCHIVE_OVERHEAD_FACTOR + ARCHIVE_SLACK_BYTES;
  }

  /** Whether a bundle of this id exists (docker load picks a free id for a new image). */
  has(id: string): boolean {
    return this.deps.repository.get(id) !== undefined;
  }

  private async createBundle(
    requestedId: string | undefined,
    spec: BundleSpec,
    labels: Record<string, string> | undefined,
    source: { path: string; root: string } | undefined,
    options: { checkExecutable: boolean; rootfsSource?: 'upload' },
  ): Promise<Bundle> {
    const id = requestedId ?? randomBytes(6).toString('hex');
    return this.locks.run(id, async () => {
      if (this.deps.repository.get(id)) {
        throw new ConflictError('bundle_exists', `bundle "${id}" already exists`);
      }
      const dir = await this.claimDirectory(id);
      try {
        const config = await this.configFor(id, spec, dir, 'rootfs');
        let rootfsState = { ready: false, sizeBytes: 0, fileCount: 0 };
        if (source !== undefined) {
          rootfsState = await this.fillRootfs(dir, (writer) => importTree(source.path, source.root, writer));
          if (options.checkExecutable) await this.checkExecutable(id, spec, config, join(dir, 'rootfs'));
        }
        const imported = source !== undefined && options.rootfsSource === undefined;
        const record: BundleRecord = {
          id,
          path: dir,
          created: new Date().toISOString(),
          labels: labels ?? {},
          spec,
          configDigest: await writeConfig(dir, config),
          rootfsSource: imported ? 'import' : 'upload',
          rootfsOrigin: imported ? source.path : null,
          rootfsReady: rootfsState.ready,
          sizeBytes: rootfsState.sizeBytes,
          fileCount: rootfsState.fileCount,
          privateTo: null,
        };
        this.deps.repository.insert(record);
        this.deps.logger.info({ bundleId: id, rootfs: record.rootfsSource }, 'bundle created');
        return this.toBundle(record);
      } catch (error) {
        await discardTree(dir);
        throw error;
      }
    });
  }

  /**
   * Extracts a tarball into a temp dir beside the old rootfs and swaps it in only once every entry is written,
   * so a refused or broken upload leaves the bundle exactly as it was.
   */
  async uploadRootfs(
    id: string,
    body: Readable,
    contentLength: number | undefined,
  ): Promise<RootfsUploadResult> {
    const maxArchiveBytes = this.maxArchiveBytes;
    return this.locks.run(id, async () => {
      const record = this.require(id);
      if (record.rootfsSource === 'shared') {
        throw new ConflictError(
          'bundle_rootfs_shared',
          `bundle "${id}" uses the rootfs of bundle "${record.rootfsOrigin}"; upload to that one`,
        );
      }
      this.refuseInUse(record, 'replace its rootfs');
      if (contentLength !== undefined && contentLength > maxArchiveBytes) {
        throw new ContentTooLargeError(
          'rootfs_too_large',
          `the archive (${contentLength} bytes) is larger than ${maxArchiveBytes} bytes, twice the rootfs quota (--max-rootfs-bytes ${this.deps.maxRootfsBytes}) plus 16 MiB`,
        );
      }
      const state = await this.fillRootfs(record.path, (writer) =>
        extractTarball(body, writer, maxArchiveBytes),
      );
      Object.assign(record, {
        rootfsSource: 'upload',
        rootfsOrigin: null,
        rootfsReady: true,
        sizeBytes: state.sizeBytes,
        fileCount: state.fileCount,
      });
      this.deps.repository.save(record);
      this.deps.logger.info({ bundleId: id, ...state }, 'rootfs uploaded');
      return { id, sizeBytes: state.sizeBytes, fileCount: state.fileCount };
    });
  }

  /** Replaces a bundle's labels (an image's names: `docker tag`, a pull of a digest runcd already has). */
  async relabel(id: string, labels: Record<string, string>): Promise<Bundle> {
    return this.locks.run(id, async () => {
      const record = this.require(id);
      record.labels = labels;
      this.deps.repository.save(record);
      return this.toBundle(record);
    });
  }

  async delete(id: string): Promise<void> {
    await this.locks.run(id, async () => {
      const record = this.require(id);
      this.refuseInUse(record, 'delete it');
      await this.removeBundle(record);
    });
  }

  /**
   * POST /containers in all three forms. The managed forms become a bundle path plus the digest runcd wrote;
   * the bundles are linked to the container before it is created (so they cannot be deleted or re-uploaded
   * meanwhile) and unlinked again, with a private bundle removed, when the create fails.
   */
  async createContainer(request: CreateContainerRequest): Promise<Container> {
    const { bundle, bundleId, spec, rootfsFrom, ...options } = request;
    if (this.containerExists(options.id)) {
      throw new ConflictError('container_exists', `container "${options.id}" already exists`, options.id);
    }
    let target: BundleRecord | undefined;
    let privateBundle: BundleRecord | undefined;
    if (bundleId !== undefined) {
      target = this.require(bundleId);
    } else if (bundle !== undefined && isAbsolute(bundle)) {
      target = this.deps.repository.findByPath(await realpath(bundle).catch(() => bundle));
    }
    if (target && target.privateTo !== null) {
      throw new ConflictError(
        'bundle_private',
        `bundle "${target.id}" is private to container "${target.privateTo}"`,
      );
    }
    if (spec !== undefined && rootfsFrom !== undefined) {
      privateBundle = await this.createPrivate(options.id, spec, this.require(rootfsFrom));
      target = privateBundle;
    }
    const owner = target && this.rootfsOwner(target);
    const linked = target ? [...new Set([target.id, owner!.id])] : [];
    let isLinked = false;
    try {
      if (target && owner) {
        await this.locks.run(owner.id, async () => {
          const current = this.require(owner.id);
          if (!current.rootfsReady) {
            throw new ConflictError(
              'bundle_rootfs_missing',
              `bundle "${owner.id}" has no rootfs yet: upload one with PUT /bundles/${owner.id}/rootfs`,
            );
          }
          if (!this.deps.repository.link(options.id, linked)) {
            throw new ConflictError(
              'container_exists',
              `container "${options.id}" already exists`,
              options.id,
            );
          }
          isLinked = true;
        });
        await this.checkExecutable(
          target.id,
          target.spec,
          await readConfig(target.path),
          join(owner.path, 'rootfs'),
        );
      }
      return await this.deps.containers.create({
        ...options,
        bundle: target?.path ?? bundle!,
        expectedConfigDigest: target?.configDigest,
      });
    } catch (error) {
      if (isLinked) this.deps.repository.unlink(options.id, linked);
      if (privateBundle) await this.removeBundle(privateBundle);
      throw error;
    }
  }

  /** For the inspector: the rootfs a private bundle in `bundleDir` shares, if it is one. */
  sharedRootfsOf(bundleDir: string): string | undefined {
    const record = this.deps.repository.findByPath(bundleDir);
    if (record?.rootfsSource !== 'shared' || record.rootfsOrigin === null) return undefined;
    const owner = this.deps.repository.get(record.rootfsOrigin);
    return owner && join(owner.path, 'rootfs');
  }

  /** Host CPUs bound `cpus`: a quota above them would never be reached. */
  checkResources(resources: ResourceLimits | undefined): void {
    const cpus = availableParallelism();
    if (resources?.cpus !== undefined && resources.cpus > cpus) {
      throw new InvalidInputError(
        'invalid_resources',
        `resources.cpus is ${resources.cpus}, but this host has ${cpus} CPUs`,
      );
    }
  }

  private async createPrivate(
    containerId: string,
    spec: BundleSpec,
    source: BundleRecord,
  ): Promise<BundleRecord> {
    if (source.rootfsSource === 'shared' || source.privateTo !== null) {
      throw new ConflictError(
        'bundle_private',
        `bundle "${source.id}" is a private bundle without a rootfs of its own; use the bundle it came from`,
      );
    }
    this.checkSpec(spec);
    const id = `private-${randomBytes(6).toString('hex')}`;
    const sharedRootfs = join(source.path, 'rootfs');
    return this.locks.run(id, async () => {
      const dir = await this.claimDirectory(id);
      try {
        // The hostname of a private bundle is its container's.
        const config = await this.configFor(containerId, spec, dir, sharedRootfs);
        const record: BundleRecord = {
          id,
          path: dir,
          created: new Date().toISOString(),
          labels: {},
          spec,
          configDigest: await writeConfig(dir, config),
          rootfsSource: 'shared',
          rootfsOrigin: source.id,
          rootfsReady: true,
          sizeBytes: 0,
          fileCount: 0,
          privateTo: containerId,
        };
        this.deps.repository.insert(record);
        return record;
      } catch (error) {
        await discardTree(dir);
        throw error;
      }
    });
  }

  private async containerDeleted(containerId: string): Promise<void> {
    for (const id of this.deps.repository.unlinkContainer(containerId)) {
      const record = this.deps.repository.get(id);
      if (record?.privateTo !== containerId) continue;
      try {
        await this.locks.run(id, () => this.removeBundle(record));
      } catch (error) {
        this.deps.logger.error({ bundleId: id, err: error }, 'removing a private bundle failed');
      }
    }
  }

  private async removeBundle(record: BundleRecord): Promise<void> {
    await discardTree(record.path);
    this.deps.repository.remove(record.id);
    this.deps.logger.info({ bundleId: record.id }, 'bundle deleted');
  }

  private refuseInUse(record: BundleRecord, action: string): void {
    const users = this.deps.repository.containersUsing(record.id);
    if (users.length > 0) {
      throw new ConflictError(
        'bundle_in_use',
        `cannot ${action}: bundle "${record.id}" is used by container${users.length > 1 ? 's' : ''} ${users.map((user) => `"${user}"`).join(', ')}; delete ${users.length > 1 ? 'them' : 'it'} first`,
      );
    }
  }

  /** The bundle whose rootfs directory `record` runs on (itself, or the one it shares). */
  private rootfsOwner(record: BundleRecord): BundleRecord {
    if (record.rootfsSource !== 'shared' || record.rootfsOrigin === null) return record;
    return this.require(record.rootfsOrigin);
  }

  private checkSpec(spec: BundleSpec): void {
    if (spec.process.terminal === true) {
      throw new InvalidInputError(
        'terminal_not_supported',
        'process.terminal must be false: runc would need a console socket, and runcd keeps the output as logs',
      );
    }
    this.checkResources(spec.resources);
  }

  /** config.json for `spec`, checked by the bundle policy before anything else is written. */
  private async configFor(name: string, spec: BundleSpec, dir: string, rootPath: string): Promise<OciSpec> {
    if (spec.init) await this.requireInit();
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

  /** args[0] looked up in the rootfs as runc will, so a missing command is a 400 now, not a 422 from runc. */
  private async checkExecutable(
    id: string,
    spec: BundleSpec,
    config: OciSpec,
    rootfs: string,
  ): Promise<void> {
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

  private async importSource(path: string): Promise<{ path: string; root: string }> {
    if (this.importRoots.length === 0) {
      throw new InvalidInputError(
        'import_root_not_configured',
        'rootfs.path needs an import root: start runcd with --import-root DIR, or upload a tarball with rootfs: {upload: true}',
      );
    }
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      throw new InvalidInputError('rootfs_not_found', `rootfs.path "${path}" does not exist`);
    }
    const root = this.importRoots.find((dir) => real.startsWith(dir.endsWith(sep) ? dir : dir + sep));
    if (root === undefined) {
      throw new InvalidInputError(
        'rootfs_outside_import_roots',
        `rootfs.path "${path}" is not inside an import root (${this.importRoots.join(', ')})`,
      );
    }
    if (!(await stat(real)).isDirectory()) {
      throw new InvalidInputError('rootfs_not_found', `rootfs.path "${path}" is not a directory`);
    }
    return { path: real, root };
  }

  /** BUNDLE_ROOT/ID, made here (0700) or refused: a directory of that name that runcd did not make is left alone. */
  private async claimDirectory(id: string): Promise<string> {
    const dir = join(this.root, id);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ConflictError('bundle_exists', `a directory "${dir}" already exists in the bundle root`);
      }
      throw error;
    }
    return dir;
  }

  /** Writes a rootfs through a RootfsWriter into a temp dir in `dir`, then swaps it in as `dir/rootfs`. */
  private async fillRootfs(
    dir: string,
    fill: (writer: RootfsWriter) => Promise<void>,
  ): Promise<{ ready: boolean; sizeBytes: number; fileCount: number }> {
    const temp = await mkdtemp(join(dir, `${TEMP_PREFIX}new-`));
    try {
      const writer = new RootfsWriter(temp, {
        maxBytes: this.deps.maxRootfsBytes,
        maxEntries: MAX_ROOTFS_ENTRIES,
      });
      await fill(writer);
      await writer.finish();
      // The container's "/" must be searchable by its non-root users.
      await chmod(temp, 0o755);
      const target = join(dir, 'rootfs');
      const old = join(dir, `${TEMP_PREFIX}old-${randomBytes(4).toString('hex')}`);
      const hadOld = await rename(target, old).then(
        () => true,
        () => false,
      );
      await rename(temp, target);
      if (hadOld) await discardTree(old);
      return { ready: true, sizeBytes: writer.sizeBytes, fileCount: writer.entryCount };
    } catch (error) {
      await discardTree(temp);
      throw rootfsError(error);
    }
  }

  private containerExists(id: string): boolean {
    try {
      this.deps.containers.get(id);
      return true;
    } catch {
      return false;
    }
  }

  private require(id: string): BundleRecord {
    const record = this.deps.repository.get(id);
    if (!record) throw new NotFoundError('bundle_id_not_found', `bundle "${id}" does not exist`);
    return record;
  }

  private toBundle(record: BundleRecord): Bundle {
    return {
      id: record.id,
      path: record.path,
      created: record.created,
      labels: record.labels,
      rootfs: {
        source: record.rootfsSource,
        origin: record.rootfsOrigin,
        ready: record.rootfsReady,
        sizeBytes: record.sizeBytes,
        fileCount: record.fileCount,
      },
      configDigest: record.configDigest,
      privateTo: record.privateTo,
      containers: this.deps.repository.containersUsing(record.id),
      spec: record.spec,
    };
  }
}

async function writeConfig(dir: string, config: OciSpec): Promise<string> {
  const bytes = Buffer.from(JSON.stringify(config, null, 2) + '\n');
  await writeFile(join(dir, 'config.json'), bytes, { mode: 0o600, flag: 'wx' });
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

/** A managed bundle's config.json; one that no longer parses is caught by the digest check at create. */
async function readConfig(dir: string): Promise<OciSpec> {
  try {
    return JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as OciSpec;
  } catch {
    return { ociVersion: '' };
  }
}

function rootfsError(error: unknown): unknown {
  if (error instanceof DomainError) return error;
  if (error instanceof RootfsQuotaError) return new ContentTooLargeError('rootfs_too_large', error.message);
  if (error instanceof RootfsEntryError) return new InvalidInputError(error.code, error.message);
  return error;
}
