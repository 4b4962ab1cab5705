import { statusOf, type ErrorCode } from '../error-catalog.js';
import { PROBLEM_CONTENT_TYPE, problemFor, type Problem } from '../errors.js';

/**
 * Examples for every request body and every documented error, attached to the OpenAPI document as named media
 * type examples, so Swagger UI offers them in a drop-down (and pre-fills "Try it out" with the first body). The
 * schemas stay the single description of the shapes; test/unit/openapi-examples.test.ts checks every example
 * against its schema, every error response for at least one example of its own status, and the deterministic
 * ones against what the daemon really answers. Long because it is data (one entry per body and error), with no
 * logic but `problem()`, whose codes and statuses are checked against the error catalog when it loads.
 */

export interface NamedExample {
  summary: string;
  value: unknown;
}

const ID = 'mycontainer';
const BUNDLE = '/var/lib/runcd/bundles/demo';

/** An example problem; one whose status or title disagrees with the error catalog fails at load (and so in tests). */
function problem(
  status: number,
  code: ErrorCode,
  title: string,
  detail: string,
  containerId?: string,
): Problem {
  const document = problemFor(code, detail, status);
  if (document.status !== statusOf(code).status || document.title !== title) {
    throw new Error(
      `the example for ${code} says ${status} ${title}; the catalog says ${statusOf(code).status} ${document.title}`,
    );
  }
  if (containerId !== undefined) document.containerId = containerId;
  return document;
}

/** Request bodies, by operationId. The first example is the one "Try it out" starts from. */
export const REQUEST_EXAMPLES: Readonly<Record<string, Record<string, NamedExample>>> = {
  createContainer: {
    create: { summary: 'runc create: a container from a bundle', value: { id: ID, bundle: BUNDLE } },
    labelled: {
      summary: 'With labels (filter with ?label=key=value)',
      value: { id: ID, bundle: BUNDLE, labels: { app: 'demo', lesson: '04' } },
    },
    network: {
      summary: 'On the default network, port 8080 published on an ephemeral 127.0.0.1 port',
      value: {
        id: 'web',
        bundle: BUNDLE,
        start: true,
        networks: ['runcd'],
        ports: [{ containerPort: 8080 }],
      },
    },
    userNetwork: {
      summary: 'On a user network, known to its peers as db too; ports 5432-5433 published on 15432-15433',
      value: {
        id: 'db-1',
        bundle: BUNDLE,
        start: true,
        networks: ['backend'],
        aliases: ['db'],
        ports: [{ hostPort: 15432, containerPort: 5432, range: 2 }],
      },
    },
    run: {
      summary: 'runc run: create and start, restarted on failure',
      value: {
        id: 'web',
        bundle: BUNDLE,
        start: true,
        restartPolicy: { name: 'on-failure', maxRetries: 3 },
        stopSignal: 'SIGTERM',
        stopTimeout: 5,
      },
    },
  },
  pullImage: {
    plain: {
      summary: 'docker pull: an image of a registry on this host',
      value: { reference: '127.0.0.1:5000/busybox:1' },
    },
    credentials: {
      summary: 'With credentials for this pull only',
      value: {
        reference: 'registry.example:5000/team/app:2',
        auth: { username: 'alice', password: 'secret' },
      },
    },
  },
  pushImage: {
    named: {
      summary: 'docker push: the image is named after its registry',
      value: { image: '127.0.0.1:5000/busybox:1' },
    },
    elsewhere: {
      summary: 'docker tag + push in one: another reference',
      value: { image: '127.0.0.1:5000/busybox:1', reference: '127.0.0.1:5000/mirror/busybox:1' },
    },
  },
  createNetwork: {
    subnet: {
      summary: 'A bridge network with a subnet of its own',
      value: { name: 'backend', subnet: '10.87.5.0/24' },
    },
    auto: {
      summary: 'The next free /24 of 10.87.0.0/16',
      value: { name: 'frontend', labels: { tier: 'web' } },
    },
  },
  createBundle: {
    upload: {
      summary: 'A bundle whose rootfs is uploaded next (PUT /bundles/ID/rootfs)',
      value: {
        id: 'web',
        rootfs: { upload: true },
        process: { args: ['sh', '-c', 'echo started; exec sleep 999999'], env: ['MODE=demo'] },
        init: true,
        resources: { memoryBytes: 67108864, pidsLimit: 64 },
        labels: { app: 'web' },
      },
    },
    import: {
      summary: 'A rootfs copied from a directory under --import-root',
      value: { id: 'tools', rootfs: { path: '/srv/rootfs/busybox' }, process: { args: ['sleep', '999999'] } },
    },
  },
  updateContainerResources: {
    pids: { summary: 'runc update --pids-limit 200', value: { pidsLimit: 200 } },
    all: {
      summary: 'Memory, CPUs and pids at once',
      value: { memoryBytes: 134217728, cpus: 0.5, pidsLimit: 128 },
    },
  },
  execInContainer: {
    ps: { summary: 'runc exec ID ps', value: { args: ['ps'] } },
    detailed: {
      summary: 'With environment, working directory, user and a deadline',
      value: {
        args: ['ls', '-la'],
        env: ['DEBUG=1'],
        cwd: '/bin',
        user: '1000:1000',
        timeoutSeconds: 10,
      },
    },
  },
};

/** Errors any operation with that status can answer (the security plugin's, the runtime pool's). */
const COMMON_PROBLEMS: Readonly<Record<number, Record<string, NamedExample>>> = {
  401: {
    token_required: {
      summary: 'No token where one is required (TCP, or --require-token)',
      value: problem(
        401,
        'token_required',
        'Unauthorized',
        'a bearer token is required on TCP: send "Authorization: Bearer <token>" (make one with: runcd token create --name NAME --scope read)',
      ),
    },
    invalid_token: {
      summary: 'A malformed, unknown or revoked token',
      value: problem(
        401,
        'invalid_token',
        'Unauthorized',
        'the bearer token is not valid: it is malformed, unknown or revoked',
      ),
    },
  },
  403: {
    insufficient_scope: {
      summary: "The token's scope is too small for the route",
      value: problem(
        403,
        'insufficient_scope',
        'Forbidden',
        'token "ci" has scope "read"; POST /containers/:id/kill needs "operate"',
      ),
    },
    origin_forbidden: {
      summary: 'A request with an Origin header on TCP (a web page)',
      value: problem(
        403,
        'origin_forbidden',
        'Forbidden',
        'requests with an Origin header ("https://example.com") are refused on TCP: runcd must never be driven by a web page through a browser',
      ),
    },
  },
  404: {
    container_not_found: {
      summary: 'No container with this id',
      value: problem(404, 'container_not_found', 'Not Found', `container "${ID}" does not exist`, ID),
    },
  },
  413: {
    body_too_large: {
      summary: 'A body over the route limit',
      value: problem(
        413,
        'body_too_large',
        'Content Too Large',
        'request body is larger than 16384 bytes, the limit of this route',
      ),
    },
  },
  415: {
    unsupported_media_type: {
      summary: 'A body that is not JSON',
      value: problem(
        415,
        'unsupported_media_type',
        'Unsupported Media Type',
        'request bodies must be JSON (Content-Type: application/json), or a tarball for PUT /bundles/ID/rootfs',
      ),
    },
  },
  422: {
    runtime_create_failed: {
      summary: 'runc refused the bundle (its words in detail)',
      value: problem(
        422,
        'runtime_create_failed',
        'Unprocessable Content',
        'runtime could not create the container: container_linux.go:380: starting container process caused: exec: "/app": permission denied',
        ID,
      ),
    },
  },
  429: {
    rate_limited: {
      summary: 'The token is over its request rate',
      value: problem(
        429,
        'rate_limited',
        'Too Many Requests',
        'token "ci" is over its limit of 20 requests per second; retry in 1 s',
      ),
    },
  },
  503: {
    runtime_busy: {
      summary: 'Too many runtime processes running and queued',
      value: problem(
        503,
        'runtime_busy',
        'Service Unavailable',
        'too many runtime commands at once (8 running, 64 waiting); retry shortly',
      ),
    },
  },
  504: {
    runtime_timeout: {
      summary: 'runc did not answer in time (its process group was killed)',
      value: problem(
        504,
        'runtime_timeout',
        'Gateway Timeout',
        'runc start did not finish within 60000 ms and was killed',
        ID,
      ),
    },
  },
};

const INVALID_ID: NamedExample = {
  summary: 'An id runc could misread (a path, a flag, too long)',
  value: problem(
    400,
    'invalid_container_id',
    'Bad Request',
    'params.id: container id must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit',
  ),
};
const INVALID_JSON: NamedExample = {
  summary: 'A body that does not parse',
  value: problem(
    400,
    'invalid_json',
    'Bad Request',
    "Body is not valid JSON but content-type is set to 'application/json'",
  ),
};
const INVALID_SIGNAL: NamedExample = {
  summary: 'An unknown signal',
  value: problem(
    400,
    'invalid_signal',
    'Bad Request',
    'querystring.signal: unknown signal "KILLX": use a name such as SIGTERM, TERM or KILL, or a number from 1 to 31',
  ),
};
const INVALID_BUNDLE_ID: NamedExample = {
  summary: 'A bundle id that is not a plain name',
  value: problem(
    400,
    'invalid_container_id',
    'Bad Request',
    'params.id: bundle id must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit',
  ),
};
const BUNDLE_NOT_FOUND: NamedExample = {
  summary: 'No managed bundle with this id',
  value: problem(404, 'bundle_id_not_found', 'Not Found', 'bundle "web" does not exist'),
};
const BUNDLE_IN_USE: NamedExample = {
  summary: 'A container still uses the bundle',
  value: problem(
    409,
    'bundle_in_use',
    'Conflict',
    'cannot delete it: bundle "web" is used by container "web-1"; delete it first',
  ),
};
const conflict = (code: ErrorCode, detail: string): NamedExample => ({
  summary: detail,
  value: problem(409, code, 'Conflict', detail, ID),
});
const SESSIONS_UNAVAILABLE: NamedExample = {
  summary: 'This machine lacks the SOCK_SEQPACKET binding',
  value: problem(
    501,
    'sessions_unavailable',
    'Not Implemented',
    'the SOCK_SEQPACKET binding (node-unix-socket-linux-x64-gnu/node-unix-socket.linux-x64-gnu.node) cannot be loaded: linux/arm64',
  ),
};
const invalidQuery = (detail: string): NamedExample => ({
  summary: 'A query parameter out of range',
  value: problem(400, 'invalid_query', 'Bad Request', detail),
});

const INVALID_NETWORK_NAME: NamedExample = {
  summary: 'A network name that is not a plain name',
  value: problem(
    400,
    'invalid_network_name',
    'Bad Request',
    'params.name: network name must be 1-63 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit',
  ),
};
const NETWORK_NOT_FOUND: NamedExample = {
  summary: 'No network with this name',
  value: problem(404, 'network_not_found', 'Not Found', 'network "backend" does not exist'),
};

/** Errors particular to one operation, by operationId and status; they come before the common ones. */
const IMAGE_REFERENCE_INVALID: NamedExample = {
  summary: 'A name without a registry host (runcd never contacts Docker Hub)',
  value: problem(
    400,
    'image_reference_invalid',
    'Bad Request',
    'runcd does not implement pulling images from Docker Hub ("busybox") of the Docker Engine API: names without a registry host go to Docker Hub, which runcd does not contact; name a registry (HOST:PORT/NAME[:TAG])',
  ),
};
const REGISTRY_DENIED: NamedExample = {
  summary: 'The registry refused the credentials',
  value: problem(
    403,
    'registry_denied',
    'Forbidden',
    'pulling 127.0.0.1:5000/busybox:1: the registry refused the credentials (docker login HOST, or send X-Registry-Auth) (unauthorized: authentication required)',
  ),
};
const REGISTRY_FAILURES: Record<number, Record<string, NamedExample>> = {
  502: {
    registry_failed: {
      summary: 'The registry is unreachable (or fails TLS, or speaks plain HTTP)',
      value: problem(
        502,
        'registry_failed',
        'Bad Gateway',
        'pulling 127.0.0.1:5000/busybox:1: the registry is unreachable (pinging container registry 127.0.0.1:5000: dial tcp 127.0.0.1:5000: connect: connection refused)',
      ),
    },
  },
  504: {
    registry_timeout: {
      summary: 'The registry did not answer in time',
      value: problem(
        504,
        'registry_timeout',
        'Gateway Timeout',
        'pulling 127.0.0.1:5000/busybox:1: the registry did not answer in time (did not finish within 600000 ms and was killed)',
      ),
    },
  },
};

const OPERATION_PROBLEMS: Readonly<Record<string, Record<number, Record<string, NamedExample>>>> = {
  pullImage: {
    400: { image_reference_invalid: IMAGE_REFERENCE_INVALID },
    403: { registry_denied: REGISTRY_DENIED },
    404: {
      image_not_found: {
        summary: 'No such image or tag in the registry',
        value: problem(
          404,
          'image_not_found',
          'Not Found',
          'pulling 127.0.0.1:5000/busybox:9: no such image or tag in the registry (reading manifest 9 in 127.0.0.1:5000/busybox: manifest unknown: manifest unknown)',
        ),
      },
      image_platform_missing: {
        summary: "The image has no manifest for this host's platform",
        value: problem(
          404,
          'image_platform_missing',
          'Not Found',
          'pulling 127.0.0.1:5000/arm-only:1: the registry has no manifest for linux/amd64, only for linux/arm64; nothing was downloaded',
        ),
      },
    },
    409: {
      image_in_use: {
        summary: 'The name belongs to an image containers use',
        value: problem(
          409,
          'image_in_use',
          'Conflict',
          'conflict: cannot load image 127.0.0.1:5000/busybox:1: the image of that name is used by container web; remove it first (docker rm -f), or docker save the image under another tag',
        ),
      },
    },
    413: {
      image_layer_too_large: {
        summary: 'A layer over --max-layer-bytes',
        value: problem(
          413,
          'image_layer_too_large',
          'Content Too Large',
          'pulling 127.0.0.1:5000/big:1: layer sha256:4b0bc1c4050b03c95ef2a8e36e25feac42fd31283e8c30b3ee5df6b043155d3c is 2097664 bytes, over the layer quota of 1048576 bytes (--max-layer-bytes); nothing was downloaded',
        ),
      },
    },
    ...REGISTRY_FAILURES,
  },
  pushImage: {
    400: { image_reference_invalid: IMAGE_REFERENCE_INVALID },
    403: { registry_denied: REGISTRY_DENIED },
    404: {
      image_not_found: {
        summary: 'runcd has no image of this name',
        value: problem(
          404,
          'image_not_found',
          'Not Found',
          'An image does not exist locally with the tag: 127.0.0.1:5000/busybox:1',
        ),
      },
    },
    ...REGISTRY_FAILURES,
  },
  createNetwork: {
    400: {
      network_subnet_invalid: {
        summary: 'A subnet that is not a network address',
        value: problem(
          400,
          'network_subnet_invalid',
          'Bad Request',
          'subnet "10.87.5.1/24" must be IPv4 CIDR from /8 to /29 with its host bits zero (e.g. 10.87.5.0/24)',
        ),
      },
      network_reserved_name: {
        summary: 'none and host are modes',
        value: problem(
          400,
          'network_reserved_name',
          'Bad Request',
          '"none" is a network mode, not a network name',
        ),
      },
    },
    409: {
      network_exists: {
        summary: 'The name is taken',
        value: problem(409, 'network_exists', 'Conflict', 'network "backend" already exists'),
      },
      network_subnet_overlap: {
        summary: 'The subnet overlaps another network or a host interface',
        value: problem(
          409,
          'network_subnet_overlap',
          'Conflict',
          'subnet 10.87.5.0/25 overlaps network "backend"',
        ),
      },
    },
  },
  getNetwork: {
    400: { invalid_network_name: INVALID_NETWORK_NAME },
    404: { network_not_found: NETWORK_NOT_FOUND },
  },
  deleteNetwork: {
    400: { invalid_network_name: INVALID_NETWORK_NAME },
    404: { network_not_found: NETWORK_NOT_FOUND },
    409: {
      network_in_use: {
        summary: 'A container still uses the network',
        value: problem(
          409,
          'network_in_use',
          'Conflict',
          'network "backend" is used by container "web"; delete it first',
        ),
      },
    },
  },
  createContainer: {
    400: {
      bundle_outside_roots: {
        summary: 'The bundle is not under a bundle root',
        value: problem(
          400,
          'bundle_outside_roots',
          'Bad Request',
          'bundle "/tmp/lifecycle-bundle" is outside the bundle roots (/var/lib/runcd/bundles); move it under one of them or start runcd with --bundle-root',
        ),
      },
      bundle_missing_config: {
        summary: 'No config.json in the bundle',
        value: problem(400, 'bundle_missing_config', 'Bad Request', `bundle "${BUNDLE}" has no config.json`),
      },
      executable_not_found: {
        summary: "The init's program is not in the rootfs",
        value: problem(
          400,
          'executable_not_found',
          'Bad Request',
          'exec: "nginx": executable file not found in $PATH',
          ID,
        ),
      },
      invalid_body: {
        summary: 'A body field that does not validate',
        value: problem(
          400,
          'invalid_body',
          'Bad Request',
          'body: give exactly one of bundle (a path), bundleId, or spec with rootfsFrom',
        ),
      },
      invalid_json: INVALID_JSON,
    },
    403: {
      policy_hooks: {
        summary: 'config.json refused by the bundle policy (hooks)',
        value: problem(
          403,
          'policy_hooks',
          'Forbidden',
          `config.json in bundle "${BUNDLE}" is refused by policy: hooks.prestart: hooks run programs on the host as root and are not allowed`,
        ),
      },
      policy_namespace: {
        summary: 'config.json refused by the bundle policy (a missing namespace)',
        value: problem(
          403,
          'policy_namespace',
          'Forbidden',
          `config.json in bundle "${BUNDLE}" is refused by policy: linux.namespaces: the pid namespace is required`,
        ),
      },
    },
    409: { container_exists: conflict('container_exists', `container "${ID}" already exists`) },
  },
  createBundle: {
    400: {
      rootfs_not_found: {
        summary: 'rootfs.path does not exist',
        value: problem(
          400,
          'rootfs_not_found',
          'Bad Request',
          'rootfs.path "/srv/rootfs/nginx" does not exist',
        ),
      },
      invalid_body: {
        summary: 'A body field that does not validate',
        value: problem(
          400,
          'invalid_body',
          'Bad Request',
          'body.process.args: Invalid input: expected array, received undefined',
        ),
      },
      invalid_json: INVALID_JSON,
    },
    403: {
      policy_capability: {
        summary: 'The generated config.json is refused by the bundle policy',
        value: problem(
          403,
          'policy_capability',
          'Forbidden',
          'config.json in bundle "/var/lib/runcd/bundles/web" is refused by policy: process.capabilities.bounding: CAP_SYS_ADMIN is not allowed',
        ),
      },
    },
    409: {
      bundle_exists: {
        summary: 'A bundle with this id exists',
        value: problem(409, 'bundle_exists', 'Conflict', 'bundle "web" already exists'),
      },
    },
  },
  getBundle: {
    400: { invalid_container_id: INVALID_BUNDLE_ID },
    404: { bundle_id_not_found: BUNDLE_NOT_FOUND },
  },
  deleteBundle: {
    400: { invalid_container_id: INVALID_BUNDLE_ID },
    404: { bundle_id_not_found: BUNDLE_NOT_FOUND },
    409: { bundle_in_use: BUNDLE_IN_USE },
  },
  uploadBundleRootfs: {
    400: {
      invalid_container_id: INVALID_BUNDLE_ID,
      rootfs_unsafe_path: {
        summary: 'An archive entry that would land outside the rootfs',
        value: problem(400, 'rootfs_unsafe_path', 'Bad Request', 'entry "../../etc/passwd" contains ".."'),
      },
      rootfs_not_a_tarball: {
        summary: 'A body that is not a tarball',
        value: problem(
          400,
          'rootfs_not_a_tarball',
          'Bad Request',
          'send the rootfs as a tar archive: Content-Type: application/x-tar or application/gzip or application/x-gzip',
        ),
      },
    },
    404: { bundle_id_not_found: BUNDLE_NOT_FOUND },
    409: {
      bundle_in_use: BUNDLE_IN_USE,
      bundle_rootfs_shared: {
        summary: "A private bundle runs on another bundle's rootfs",
        value: problem(
          409,
          'bundle_rootfs_shared',
          'Conflict',
          'bundle "private-3f1c9e0a2b4d" uses the rootfs of bundle "web"; upload to that one',
        ),
      },
    },
    413: {
      rootfs_too_large: {
        summary: 'The archive is over the rootfs quota',
        value: problem(
          413,
          'rootfs_too_large',
          'Content Too Large',
          'the archive (3221225472 bytes) is larger than 2164260864 bytes, twice the rootfs quota (--max-rootfs-bytes 1073741824) plus 16 MiB',
        ),
      },
    },
  },
  updateContainerResources: {
    400: {
      invalid_resources: {
        summary: 'More CPUs than the host has',
        value: problem(
          400,
          'invalid_resources',
          'Bad Request',
          'resources.cpus is 64, but this host has 2 CPUs',
        ),
      },
      invalid_body: {
        summary: 'An empty body',
        value: problem(
          400,
          'invalid_body',
          'Bad Request',
          'body: give at least one of memoryBytes, cpus, pidsLimit',
        ),
      },
    },
    409: {
      container_not_running: conflict(
        'container_not_running',
        'cannot change the resources of a container that is stopped',
      ),
    },
  },
  listContainers: {
    400: {
      invalid_query: {
        summary: 'A label filter that is not key=value',
        value: problem(
          400,
          'invalid_query',
          'Bad Request',
          'querystring.label: label filter "app" must be key=value',
        ),
      },
    },
  },
  startContainer: {
    409: {
      container_already_running: conflict(
        'container_already_running',
        'cannot start an already running container',
      ),
      container_stopped: conflict('container_stopped', 'cannot start a container that has stopped'),
    },
  },
  execInContainer: {
    400: {
      executable_not_found: {
        summary: 'The program is not in the container',
        value: problem(
          400,
          'executable_not_found',
          'Bad Request',
          'exec failed: unable to start container process: exec: "bash": executable file not found in $PATH',
          ID,
        ),
      },
      invalid_body: {
        summary: 'A body field that does not validate',
        value: problem(400, 'invalid_body', 'Bad Request', 'body.cwd: cwd must be an absolute path'),
      },
      invalid_json: INVALID_JSON,
    },
    409: {
      container_stopped: conflict('container_stopped', 'cannot exec into a stopped container'),
      container_paused: conflict('container_paused', 'cannot exec into a paused container: resume it first'),
    },
  },
  execWithStdin: {
    400: {
      invalid_query: {
        summary: 'No command given',
        value: problem(400, 'invalid_query', 'Bad Request', 'querystring.args: Invalid input'),
      },
    },
    409: {
      container_stopped: conflict('container_stopped', 'cannot exec into a stopped container'),
      container_paused: conflict('container_paused', 'cannot exec into a paused container: resume it first'),
    },
  },
  execSession: {
    409: {
      container_stopped: conflict('container_stopped', 'cannot exec into a stopped container'),
    },
    426: {
      websocket_required: {
        summary: 'A plain GET, without Upgrade: websocket',
        value: problem(
          426,
          'websocket_required',
          'Upgrade Required',
          'this route is a WebSocket: connect with Upgrade: websocket (e.g. runcctl exec -t)',
        ),
      },
    },
    501: { sessions_unavailable: SESSIONS_UNAVAILABLE },
  },
  attachSession: {
    409: {
      container_stopped: conflict(
        'container_stopped',
        'cannot attach to a stopped container: start it first',
      ),
    },
    426: {
      websocket_required: {
        summary: 'A plain GET, without Upgrade: websocket',
        value: problem(
          426,
          'websocket_required',
          'Upgrade Required',
          'this route is a WebSocket: connect with Upgrade: websocket (e.g. runcctl attach)',
        ),
      },
    },
    501: { sessions_unavailable: SESSIONS_UNAVAILABLE },
  },
  killContainer: {
    400: { invalid_signal: INVALID_SIGNAL },
    409: { container_not_running: conflict('container_not_running', `container "${ID}" is not running`) },
  },
  deleteContainer: {
    409: {
      container_not_stopped: conflict(
        'container_not_stopped',
        'cannot delete container that is not stopped: running',
      ),
    },
  },
  stopContainer: {
    400: { invalid_signal: INVALID_SIGNAL },
    409: {
      container_not_created: conflict('container_not_created', `container "${ID}" is still being created`),
    },
    504: {
      stop_timeout: {
        summary: 'The container outlived SIGKILL',
        value: problem(
          504,
          'stop_timeout',
          'Gateway Timeout',
          `container "${ID}" did not stop after SIGKILL`,
          ID,
        ),
      },
    },
  },
  restartContainer: {
    409: {
      container_not_created: conflict('container_not_created', `container "${ID}" is still being created`),
    },
  },
  pauseContainer: {
    409: {
      container_not_running: conflict('container_not_running', 'cannot pause a container that is stopped'),
    },
  },
  resumeContainer: {
    409: {
      container_not_paused: conflict('container_not_paused', 'cannot resume a container that is running'),
    },
  },
  waitContainer: {
    400: {
      invalid_query: invalidQuery(
        'querystring.condition: Invalid option: expected one of "stopped"|"removed"',
      ),
    },
  },
  containerLogs: {
    400: { invalid_query: invalidQuery('querystring.tail: Too small: expected number to be >=0') },
  },
  containerProcesses: {
    409: { container_not_running: conflict('container_not_running', `container "${ID}" is not running`) },
  },
  containerStats: {
    400: { invalid_query: invalidQuery('querystring.interval: Too small: expected number to be >=1') },
    409: { container_not_running: conflict('container_not_running', `container "${ID}" is not running`) },
  },
  streamEvents: {
    400: {
      invalid_query: invalidQuery(
        'querystring.since: "yesterday" is not a time: use RFC 3339 (2026-11-28T10:30:00Z) or unix seconds',
      ),
    },
  },
};

const STATUS_TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request: the id, query or body does not validate, or the bundle is unusable',
  401: 'Unauthorized: no token, or a token that is not valid',
  403: "Forbidden: the token's scope, the bundle policy or the transport refuses it",
  404: 'Not Found: no container (or bundle) with this id',
  409: "Conflict: the container's (or bundle's) state does not allow it",
  413: 'Content Too Large: the body is over the route limit',
  415: 'Unsupported Media Type: bodies must be JSON (a tarball for a rootfs upload)',
  422: 'Unprocessable Content: the runtime refused the bundle',
  429: 'Too Many Requests: the token is over its rate',
  502: 'Bad Gateway: the registry is unreachable, fails TLS or failed the copy',
  503: 'Service Unavailable: too many runtime processes; retry after Retry-After seconds',
  504: 'Gateway Timeout: the runtime did not answer in time',
};

/** The examples of one error response: the operation's own first, then the common ones for that status. */
export function problemExamples(
  operationId: string,
  status: number,
  operation: { hasIdParam: boolean; hasBody: boolean; hasJsonBody: boolean; hasQuery: boolean },
): Record<string, NamedExample> {
  const examples: Record<string, NamedExample> = { ...OPERATION_PROBLEMS[operationId]?.[status] };
  const own = Object.keys(examples).length > 0;
  if (status === 400) {
    if (operation.hasIdParam) examples.invalid_container_id ??= INVALID_ID;
    if (operation.hasBody && operation.hasJsonBody) examples.invalid_json ??= INVALID_JSON;
  }
  // A 404 of the operation's own (a bundle) replaces the container one.
  if (!(status === 404 && own)) Object.assign(examples, COMMON_PROBLEMS[status]);
  if (Object.keys(examples).length === 0 && status === 400 && operation.hasQuery) {
    examples.invalid_query = invalidQuery('querystring: a parameter does not validate');
  }
  return examples;
}

interface MediaType {
  schema?: unknown;
  examples?: Record<string, { $ref: string }>;
}
interface Operation {
  operationId?: string;
  parameters?: Array<{ in: string; name: string }>;
  requestBody?: { content?: Record<string, MediaType> };
  responses?: Record<string, { description?: string; content?: Record<string, MediaType> }>;
}

/**
 * Attaches the examples to a generated OpenAPI document, and declares error responses with the media type they
 * are really sent as (application/problem+json) and a description that says when they happen. Each example is
 * stored once under components.examples and referenced wherever it applies.
 */
export function attachExamples<T>(document: T): T {
  const root = document as {
    paths?: Record<string, Record<string, Operation>>;
    components?: { examples?: Record<string, NamedExample> };
  };
  const components = (root.components ??= {});
  const stored = (components.examples ??= {});
  // Keyed by content: the same problem listed for many operations is stored once.
  const names = new Map<string, string>();
  const references = (examples: Record<string, NamedExample>, prefix: string) =>
    Object.fromEntries(
      Object.entries(examples).map(([name, example]) => {
        const content = JSON.stringify(example);
        let storedName = names.get(content);
        if (storedName === undefined) {
          storedName = name in stored ? `${prefix}.${name}` : name;
          stored[storedName] = example;
          names.set(content, storedName);
        }
        return [name, { $ref: `#/components/examples/${storedName}` }];
      }),
    );

  for (const methods of Object.values(root.paths ?? {})) {
    for (const operation of Object.values(methods)) {
      const operationId = operation.operationId;
      if (!operationId) continue;
      const jsonBody = operation.requestBody?.content?.['application/json'];
      const bodyExamples = REQUEST_EXAMPLES[operationId];
      if (jsonBody && bodyExamples)
        jsonBody.examples = references(
          Object.fromEntries(
            Object.entries(bodyExamples).map(([name, example]) => [`${operationId}.${name}`, example]),
          ),
          operationId,
        );
      const shape = {
        hasIdParam:
          operation.parameters?.some((parameter) => parameter.in === 'path' && parameter.name === 'id') ??
          false,
        hasBody: operation.requestBody !== undefined,
        hasJsonBody: jsonBody !== undefined,
        hasQuery: operation.parameters?.some((parameter) => parameter.in === 'query') ?? false,
      };
      for (const [statusText, response] of Object.entries(operation.responses ?? {})) {
        const status = Number(statusText);
        if (!(status >= 400) || !response.content) continue;
        const media = Object.values(response.content)[0];
        if (!media) continue;
        response.content = {
          [PROBLEM_CONTENT_TYPE]: {
            schema: media.schema,
            examples: references(problemExamples(operationId, status, shape), operationId),
          },
        };
        response.description = STATUS_TITLES[status] ?? response.description;
      }
    }
  }
  return document;
}
