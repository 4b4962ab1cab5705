import { z } from 'zod';
import { RLIMIT_TYPES } from '../runtime/host-limits.js';
import { CONTAINER_ID_PATTERN, UserParam } from './common.js';
import { ArgvEntry, CreateContainerBody, EnvEntry, Labels } from './container.js';

export const BundleId = z
  .string()
  .regex(
    CONTAINER_ID_PATTERN,
    'bundle id must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit',
  )
  .describe('Bundle id; the bundle lives in BUNDLEROOT/ID')
  .meta({ example: 'web' });

export const BundleIdParams = z.object({ id: BundleId });

const MIB = 1024 * 1024;
const AbsolutePath = z.string().regex(/^\//, 'must be an absolute path').max(4096);

export const ResourceLimits = z
  .object({
    memoryBytes: z
      .number()
      .int()
      .min(6 * MIB, 'memoryBytes must be at least 6 MiB (6291456)')
      .max(2 ** 50)
      .optional()
      .describe('linux.resources.memory.limit'),
    cpus: z
      .number()
      .min(0.01)
      .max(1024)
      .optional()
      .describe(
        "CPUs worth of time: linux.resources.cpu.quota = cpus × period (100 ms); at most the host's CPUs (400 invalid_resources above them)",
      ),
    pidsLimit: z.number().int().min(1).max(4194304).optional().describe('linux.resources.pids.limit'),
  })
  .strict()
  .meta({ id: 'ResourceLimits', example: { memoryBytes: 268435456, cpus: 0.5, pidsLimit: 100 } });
export type ResourceLimits = z.infer<typeof ResourceLimits>;

export const Rlimit = z
  .object({
    type: z.enum(RLIMIT_TYPES as [string, ...string[]]),
    soft: z.number().int().min(0),
    hard: z.number().int().min(0),
  })
  .strict()
  .describe("Clamped to the host's hard limit");

export const ProcessSpec = z
  .object({
    args: z
      .array(ArgvEntry.min(1))
      .min(1)
      .max(1024)
      .describe('Command and arguments; args[0] is looked up in the rootfs PATH at create, as runc would'),
    env: z
      .array(EnvEntry)
      .max(1024)
      .optional()
      .describe('KEY=value, added to (and overriding) runc spec env'),
    cwd: AbsolutePath.optional().describe('Default /'),
    user: UserParam.optional().describe('uid[:gid], 0-2147483647 each; default 0:0'),
    terminal: z
      .boolean()
      .optional()
      .describe(
        "A pty for the process (runc's own, held by conmon), 24x80 at start; its output still goes to the log; attach with GET /containers/{id}/attach/session or runcctl attach (default false)",
      ),
    rlimits: z.array(Rlimit).max(16).optional(),
  })
  .strict();
export type ProcessSpec = z.infer<typeof ProcessSpec>;

export const MountSpec = z
  .object({
    destination: AbsolutePath,
    type: z.string().min(1).max(64).optional().describe('Default bind'),
    source: z.string().min(1).max(4096).optional().describe('Host path for a bind mount'),
    options: z.array(z.string().min(1).max(256)).max(32).optional(),
    readonly: z.boolean().optional().describe('Adds "ro"'),
  })
  .strict()
  .describe('Checked by the bundle policy: host sources only from --allow-mount-source directories');

export const BundleSpec = z
  .object({
    process: ProcessSpec,
    hostname: z
      .string()
      .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/, 'hostname must be 1-63 characters of A-Z a-z 0-9 . -')
      .optional()
      .describe('Default: the bundle id'),
    readonlyRootfs: z
      .boolean()
      .optional()
      .describe(
        "Default true, as runc spec's. false on a private bundle (spec + rootfsFrom): the container gets its own writable overlay layer over the shared rootfs, which is never written; removed with the container",
      ),
    resources: ResourceLimits.optional(),
    mounts: z.array(MountSpec).max(64).optional(),
    init: z
      .boolean()
      .optional()
      .describe('Run tini as PID 1 (bind-mounted read-only at /dev/init), so SIGTERM reaches the app'),
  })
  .strict()
  .meta({ id: 'BundleSpec' });
export type BundleSpec = z.infer<typeof BundleSpec>;

export const RootfsRequest = z
  .object({
    path: AbsolutePath.optional().describe('A directory under an --import-root; copied into the bundle'),
    upload: z.literal(true).optional().describe('The rootfs comes later, with PUT /bundles/ID/rootfs'),
  })
  .strict()
  .refine((rootfs) => (rootfs.path === undefined) !== (rootfs.upload === undefined), {
    message: 'give exactly one of rootfs.path or rootfs.upload: true',
  })
  .meta({ oneOf: [{ required: ['path'] }, { required: ['upload'] }] });

export const CreateBundleBody = BundleSpec.extend({
  id: BundleId.optional().describe('Default: a random id'),
  rootfs: RootfsRequest,
  labels: Labels.optional(),
})
  .strict()
  .meta({
    example: {
      id: 'web',
      rootfs: { upload: true },
      process: { args: ['httpd', '-f', '-p', '8080'], env: ['MODE=demo'] },
      resources: { memoryBytes: 67108864, pidsLimit: 64 },
      init: true,
    },
  });
export type CreateBundleBody = z.infer<typeof CreateBundleBody>;

export const Bundle = z
  .object({
    id: BundleId,
    path: z.string().describe('BUNDLEROOT/ID, usable as `bundle` in POST /containers'),
    created: z.string(),
    labels: z.record(z.string(), z.string()),
    rootfs: z.object({
      source: z
        .enum(['import', 'upload', 'shared'])
        .describe("import: copied from an import root; upload: a tarball; shared: another bundle's rootfs"),
      origin: z.string().nullable().describe('The imported directory, or the bundle whose rootfs is shared'),
      ready: z.boolean().describe('False until the tarball is uploaded'),
      sizeBytes: z.number().int().describe('Bytes of regular files'),
      fileCount: z.number().int().describe('Entries: files, directories, links'),
    }),
    configDigest: z.string().describe('sha256 of the config.json runcd wrote'),
    privateTo: z
      .string()
      .nullable()
      .describe('The container this private bundle belongs to (deleted with it)'),
    containers: z.array(z.string()).describe('Containers using this bundle'),
    spec: BundleSpec,
  })
  .meta({ id: 'Bundle' });
export type Bundle = z.infer<typeof Bundle>;

export const BundleDetail = Bundle.extend({
  config: z.record(z.string(), z.unknown()).describe('The generated config.json'),
}).meta({ id: 'BundleDetail' });
export type BundleDetail = z.infer<typeof BundleDetail>;

export const RootfsUploadResult = z
  .object({
    id: BundleId,
    sizeBytes: z.number().int(),
    fileCount: z.number().int(),
  })
  .meta({ id: 'RootfsUploadResult', example: { id: 'web', sizeBytes: 1187432, fileCount: 412 } });
export type RootfsUploadResult = z.infer<typeof RootfsUploadResult>;

/**
 * JSON Schema for "exactly one of these groups of fields": each branch requires its group and forbids the fields
 * of every other group, so `oneOf` holds for exactly the bodies the refinement accepts.
 */
function exactlyOneOf(groups: string[][]): object[] {
  return groups.map((group) => {
    const others = groups.flat().filter((field) => !group.includes(field));
    return { required: group, not: { anyOf: others.map((field) => ({ required: [field] })) } };
  });
}

/**
 * POST /containers: the foundation's `{id, bundle: PATH}` plus the two managed forms, `{id, bundleId}` and
 * `{id, spec, rootfsFrom}` (a private bundle, deleted with its container). Defined here, on top of the
 * foundation's body, because it needs BundleSpec.
 */
export const CreateContainerRequest = CreateContainerBody.extend({
  bundle: CreateContainerBody.shape.bundle.optional(),
  bundleId: BundleId.optional().describe('A managed bundle (POST /bundles)'),
  spec: BundleSpec.optional().describe('Same fields as POST /bundles: a private bundle for this container'),
  rootfsFrom: BundleId.optional().describe('With spec: the bundle whose rootfs the private bundle uses'),
})
  .strict()
  .superRefine((body, ctx) => {
    // Keep in step with CREATE_FORMS below, which says the same to the OpenAPI document.
    const forms = [body.bundle !== undefined, body.bundleId !== undefined, body.spec !== undefined];
    if (forms.filter(Boolean).length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'give exactly one of bundle (a path), bundleId, or spec with rootfsFrom',
        path: [],
      });
    }
    if ((body.spec === undefined) !== (body.rootfsFrom === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: 'spec and rootfsFrom go together',
        path: [body.spec === undefined ? 'rootfsFrom' : 'spec'],
      });
    }
  })
  .meta({
    example: { id: 'web-1', bundleId: 'web', labels: { app: 'web' }, start: true },
    oneOf: exactlyOneOf([['bundle'], ['bundleId'], ['spec', 'rootfsFrom']]),
  });
export type CreateContainerRequest = z.infer<typeof CreateContainerRequest>;

// Its own object, not ResourceLimits refined: a schema derived from ResourceLimits is documented as a reference to
// it, which would drop minProperties.
export const UpdateResourcesBody = z
  .object(ResourceLimits.shape)
  .strict()
  .refine((limits) => Object.keys(limits).length > 0, 'give at least one of memoryBytes, cpus, pidsLimit')
  .meta({ example: { pidsLimit: 200 }, minProperties: 1 });

export const ContainerResources = z
  .object({
    id: z.string(),
    memoryBytes: z.number().int().nullable(),
    cpus: z.number().nullable(),
    pidsLimit: z.number().int().nullable(),
  })
  .describe('The limits now in force; null: none')
  .meta({
    id: 'ContainerResources',
    example: { id: 'web-1', memoryBytes: 67108864, cpus: 0.5, pidsLimit: 200 },
  });
export type ContainerResources = z.infer<typeof ContainerResources>;
