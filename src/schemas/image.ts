import { z } from 'zod';

/** `HOST[:PORT]/NAME[:TAG|@sha256:DIGEST]`: a registry reference; a name without a registry host is refused. */
export const REGISTRY_REFERENCE_PATTERN =
  /^[a-z0-9][a-z0-9.-]{0,252}(:\d{1,5})?(\/[a-z0-9]+(?:[._-][a-z0-9]+)*){1,8}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})?$/;

export const RegistryReference = z
  .string()
  .max(512)
  .regex(
    REGISTRY_REFERENCE_PATTERN,
    'reference must be HOST[:PORT]/NAME[:TAG|@sha256:DIGEST] (lower-case name; a registry host is required)',
  )
  .describe('An image in a registry; the tag defaults to latest')
  .meta({ example: '127.0.0.1:5000/busybox:1' });

/** A registry user's credentials; they reach skopeo as a mode-0600 file, never an argv, a log or an error. */
export const RegistryCredentials = z
  .object({
    username: z.string().min(1).max(256),
    password: z.string().max(4096),
  })
  .strict()
  .describe('Registry credentials for this request only (`docker login` on the Docker socket keeps some)');

export const PullImageBody = z
  .object({
    reference: RegistryReference,
    auth: RegistryCredentials.optional(),
  })
  .strict();
export type PullImageBody = z.infer<typeof PullImageBody>;

export const PushImageBody = z
  .object({
    image: z
      .string()
      .min(1)
      .max(512)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, 'image must be an image name, NAME[:TAG], or an image id')
      .describe('The image runcd has (its name, e.g. 127.0.0.1:5000/busybox:1, or its id)'),
    reference: RegistryReference.optional().describe(
      'Where to push it (HOST[:PORT]/NAME[:TAG]); default: the image name, which must then name a registry',
    ),
    auth: RegistryCredentials.optional(),
  })
  .strict();
export type PushImageBody = z.infer<typeof PushImageBody>;

/** One line of a pull's or push's NDJSON answer: Docker's progress messages, then a result or an error. */
export const ImageProgress = z
  .object({
    status: z
      .string()
      .optional()
      .describe('"Pulling fs layer", "Downloading", "Pull complete", "Pushed", ...'),
    id: z.string().optional().describe("A layer's short digest (12 hex digits), or the tag"),
    progressDetail: z
      .object({ current: z.number().int().optional(), total: z.number().int().optional() })
      .optional()
      .describe('Bytes of the layer so far and in all'),
    progress: z.string().optional().describe("Docker's own progress bar text"),
    image: z
      .object({
        name: z.string(),
        bundleId: z.string().describe('The managed bundle that holds it: POST /containers {"bundleId": ...}'),
        digest: z.string().describe('The manifest digest in the registry'),
        downloaded: z.boolean().optional().describe('false when runcd had the image already'),
      })
      .optional()
      .describe('The last line of a pull or push that succeeded'),
    error: z.string().optional(),
    errorDetail: z.object({ message: z.string(), code: z.string().optional() }).optional(),
  })
  .describe('Docker-style progress message (the last one has `image` or `error`)');
