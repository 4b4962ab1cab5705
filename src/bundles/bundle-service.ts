import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, realpath } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { isAbsolute, join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { ConflictError, ContentTooLargeError, InvalidInputError, NotFoundError } from '../errors.js';
import type { BundlePolicy } from '../bundle-checks/bundle-policy.js';
import { KeyedMutex } from '../lifecycle/keyed-mutex.js';
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
import type { BundleRecord, BundleRepository } from '../store/bundle-repository.js';
import { BundleConfigs, readConfig, writeConfig } from './bundle-config.js';
import { importTree } from './rootfs-import.js';
import { RootfsFilling } from './rootfs-filling.js';
import { discardTree } from './rootfs-writer.js';
import { extractTarball } from './tar-extractor.js';
import type { WritableLayers } from './writable-layer.js';

/** A bundle held for a container being created; `release` hands it back when the create fails. */
export interface BundleReservation {
  bundlePath: string;
  /** The digest of the config.json runcd wrote, for a managed bundle: the container service checks it. */
  expectedConfigDigest: string | undefined;
  release(): Promise<void>;
}

export interface BundleServiceDeps {
  repository: BundleRepository;
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
  /** The overlay layers of private bundles with a writable rootfs. */
  layers: WritableLayers;
  logger: Logger;
}

/** tar headers and padding: an archive may be this much larger than the bytes it holds, plus a slack. */
const ARCHIVE_OVERHEAD_FACTOR = 2;
const ARCHIVE_SLACK_BYTES = 16 * 1024 * 1024;
/** Scratch directories in the bundle root; bundle ids start with a letter or digit, so none is ever a bundle. */
const SCRATCH_PREFIX = '.scratch-';

/**
 * Bundles runcd makes and owns, so a remote caller never writes to the host: POST /bundles generates config.json
 * from `runc spec` and the caller's fields, the rootfs is copied from an import root or streamed in as a tarball,
 * and metadata (with the digest of the config.json written) lives in the store. For container creation
 * (src/creation/) it resolves the managed forms of POST /containers to the bundle runc runs and holds it for the
 * container, and releases it (removing a private bundle) when the container is deleted; it knows no container
 * service.
 *
 * Bundle directories are 0700: a rootfs may hold setuid files (and containers run with noNewPrivileges), and no
 * host user must be able to reach them.
 *
 * (A little over 400 lines: every operation on a bundle record, and the locks that order them, stay in one class;
 * how a config.json is made is bundle-config.ts, how a rootfs is filled rootfs-filling.ts.)
 */
export class BundleService {
  private readonly locks = new KeyedMutex();
  private root: string;
  private readonly configs: BundleConfigs;
  private readonly rootfs: RootfsFilling;

  constructor(private readonly deps: BundleServiceDeps) {
    this.root = deps.bundleRoot;
    this.configs = new BundleConfigs(deps);
    this.rootfs = new RootfsFilling(deps);
  }

  /** Resolves roots and removes the temp and scratch directories an interrupted upload left. */
  async init(): Promise<void> {
    await mkdir(this.deps.bundleRoot, { recursive: true, mode: 0o755 });
    this.root = await realpath(this.deps.bundleRoot);
    await this.rootfs.init();
    for (const name of await readdir(this.root)) {
      if (name.startsWith(SCRATCH_PREFIX)) await discardTree(join(this.root, name));
    }
    for (const record of this.deps.repository.all()) await this.rootfs.discardLeftovers(record.path);
    await this.remountLayers();
  }

  /**
   * A runcd that was killed leaves its layers mounted (they live in its mount namespace, not its process); a
   * reboot takes them down. Either way each layered private bundle is mounted again here, before any of its
   * containers can be started; the bundles of containers that are gone are removed by forgetContainersExcept.
   */
  private async remountLayers(): Promise<void> {
    for (const record of this.deps.repository.all()) {
      if (record.privateTo === null || !(await this.deps.layers.has(record.path))) continue;
      const owner = record.rootfsOrigin === null ? undefined : this.deps.repository.get(record.rootfsOrigin);
      if (!owner) continue;
      try {
        await this.deps.layers.ensureMounted(record.path, join(owner.path, 'rootfs'));
      } catch (error) {
        this.deps.logger.error(
          { bundleId: record.id, containerId: record.privateTo, err: error },
          'remounting a writable layer failed',
        );
      }
    }
  }

  /**
   * At startup, once the containers are known: links to containers that are gone are forgotten, and private
   * bundles of such containers removed (a daemon killed between a create's failure and its clean-up leaves them).
   */
  async forgetContainersExcept(existing: ReadonlySet<string>): Promise<void> {
    for (const link of this.deps.repository.links()) {
      if (!existing.has(link.containerId)) this.deps.repository.unlinkContainer(link.containerId);
    }
    for (const record of this.deps.repository.all()) {
      if (record.privateTo === null || existing.has(record.privateTo)) continue;
      try {
        await this.removeBundle(record);
      } catch (error) {
        // Left for the next start; a layer that cannot be unmounted must not stop this one.
        this.deps.logger.error({ bundleId: record.id, err: error }, 'removing a private bundle failed');
      }
    }
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
    const importSource = rootfs.path !== undefined ? await this.rootfs.importSource(rootfs.path) : undefined;
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

  /** `--max-rootfs-bytes`: also what one copy into a container may write. */
  get maxRootfsBytes(): number {
    return this.deps.maxRootfsBytes;
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
        const config = await this.configs.generate(id, spec, dir, 'rootfs');
        let rootfsState = { ready: false, sizeBytes: 0, fileCount: 0 };
        if (source !== undefined) {
          rootfsState = await this.rootfs.fill(dir, (writer) => importTree(source.path, source.root, writer));
          if (options.checkExecutable)
            await this.configs.checkExecutable(id, spec, config, join(dir, 'rootfs'));
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
      const state = await this.rootfs.fill(record.path, (writer) =>
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
   * The bundle a new container runs, from the three forms of POST /containers: a bundle path (held only when it
   * is a managed bundle's), a managed `bundleId`, or `spec` + `rootfsFrom` (a private bundle made here). The
   * bundles are linked to the container before it is created, so they cannot be deleted or re-uploaded
   * meanwhile; `release` undoes all of it when the create fails.
   */
  async reserve(
    containerId: string,
    source: Pick<CreateContainerRequest, 'bundle' | 'bundleId' | 'spec' | 'rootfsFrom'>,
  ): Promise<BundleReservation> {
    const { bundle, bundleId, spec, rootfsFrom } = source;
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
      privateBundle = await this.createPrivate(containerId, spec, this.require(rootfsFrom));
      target = privateBundle;
    }
    const owner = target && this.rootfsOwner(target);
    const linked = target ? [...new Set([target.id, owner!.id])] : [];
    let isLinked = false;
    const release = async (): Promise<void> => {
      if (isLinked) this.deps.repository.unlink(containerId, linked);
      isLinked = false;
      if (privateBundle) await this.removeBundle(privateBundle);
      privateBundle = undefined;
    };
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
          if (!this.deps.repository.link(containerId, linked)) {
            throw new ConflictError(
              'container_exists',
              `container "${containerId}" already exists`,
              containerId,
            );
          }
          isLinked = true;
        });
        await this.configs.checkExecutable(
          target.id,
          target.spec,
          await readConfig(target.path),
          join(owner.path, 'rootfs'),
        );
      }
    } catch (error) {
      await release();
      throw error;
    }
    return { bundlePath: target?.path ?? bundle!, expectedConfigDigest: target?.configDigest, release };
  }

  /** A container was deleted: its bundles are free again, and its private bundle goes. */
  async releaseFor(containerId: string): Promise<void> {
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

  /** For the inspector: the rootfs a private bundle in `bundleDir` shares, if it is one. */
  sharedRootfsOf(bundleDir: string): string | undefined {
    const record = this.deps.repository.findByPath(bundleDir);
    if (record?.rootfsSource !== 'shared' || record.rootfsOrigin === null) return undefined;
    const owner = this.deps.repository.get(record.rootfsOrigin);
    return owner && join(owner.path, 'rootfs');
  }

  /**
   * The writable layer of the private bundle in `bundleDir` (`docker diff`): its overlayfs upper directory and
   * the image rootfs under it; undefined for a bundle without one (a native bundle, `docker run --read-only`).
   */
  async layerOf(bundleDir: string): Promise<{ upper: string; lower: string } | undefined> {
    const lower = this.sharedRootfsOf(bundleDir);
    if (lower === undefined || !(await this.deps.layers.has(bundleDir))) return undefined;
    return { upper: this.deps.layers.upperOf(bundleDir), lower };
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
    // A writable rootfs over a shared one is a layer of its own: the shared directory is never written.
    const layered = spec.readonlyRootfs === false;
    return this.locks.run(id, async () => {
      const dir = await this.claimDirectory(id);
      let record: BundleRecord | undefined;
      try {
        // The hostname of a private bundle is its container's.
        const config = await this.configs.generate(containerId, spec, dir, layered ? 'rootfs' : sharedRootfs);
        record = {
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
        // Recorded before it is mounted: a runcd killed in between finds the record and removes what is there.
        this.deps.repository.insert(record);
        if (layered) await this.deps.layers.create(dir, sharedRootfs);
        return record;
      } catch (error) {
        if (record) await this.removeBundle(record);
        else await discardTree(dir);
        throw error;
      }
    });
  }

  private async removeBundle(record: BundleRecord): Promise<void> {
    // Never recurse through a mounted layer: unmounted first, or the removal stops here.
    if (await this.deps.layers.has(record.path)) await this.deps.layers.unmount(record.path);
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
    this.checkResources(spec.resources);
  }

  /** config.json for `spec`, checked by the bundle policy before anything else is written. */
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
