/**
 * Every error code runcd answers with, once. A code's kind says what went wrong in the domain's terms; each
 * surface turns kinds into its own statuses (problem+json here through KIND_STATUS, the Docker API through its
 * own table over codes). `ErrorCode` is the union of the keys, so a misspelled code does not compile, and the
 * README's error table and the OpenAPI problem examples are checked against this list by tests.
 */

export type ErrorKind =
  | 'invalid_input'
  | 'malformed_request'
  | 'unauthorized'
  | 'forbidden'
  | 'policy_denied'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'too_large'
  | 'unsupported_media_type'
  | 'runtime_rejected'
  | 'rate_limited'
  | 'runtime_failure'
  | 'not_implemented'
  | 'upgrade_required'
  | 'internal'
  | 'busy'
  | 'bad_gateway'
  | 'timeout';

/** The HTTP status and RFC 9110 reason phrase (problem+json's `title`) of each kind on runcd's own API. */
export const KIND_STATUS: Readonly<Record<ErrorKind, { status: number; title: string }>> = {
  invalid_input: { status: 400, title: 'Bad Request' },
  malformed_request: { status: 400, title: 'Bad Request' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  forbidden: { status: 403, title: 'Forbidden' },
  policy_denied: { status: 403, title: 'Forbidden' },
  not_found: { status: 404, title: 'Not Found' },
  method_not_allowed: { status: 405, title: 'Method Not Allowed' },
  conflict: { status: 409, title: 'Conflict' },
  too_large: { status: 413, title: 'Content Too Large' },
  unsupported_media_type: { status: 415, title: 'Unsupported Media Type' },
  runtime_rejected: { status: 422, title: 'Unprocessable Content' },
  rate_limited: { status: 429, title: 'Too Many Requests' },
  runtime_failure: { status: 500, title: 'Runtime Failure' },
  not_implemented: { status: 501, title: 'Not Implemented' },
  upgrade_required: { status: 426, title: 'Upgrade Required' },
  internal: { status: 500, title: 'Internal Server Error' },
  busy: { status: 503, title: 'Service Unavailable' },
  bad_gateway: { status: 502, title: 'Bad Gateway' },
  timeout: { status: 504, title: 'Gateway Timeout' },
};

export interface ErrorEntry {
  kind: ErrorKind;
  /** One line: what the caller did or met, so the code can be looked up without reading the source. */
  description: string;
}

const entry = <K extends ErrorKind>(kind: K, description: string) => ({ kind, description });

export const ERROR_CATALOG = {
  // The request itself.
  invalid_json: entry('invalid_input', 'the body is not valid JSON (or is empty where JSON is required)'),
  invalid_body: entry('invalid_input', 'a body field is missing, unknown or out of range; detail names it'),
  invalid_query: entry('invalid_input', 'a query parameter is unknown or invalid; detail names it'),
  invalid_params: entry('invalid_input', 'a path parameter is invalid'),
  invalid_headers: entry('invalid_input', 'a request header is invalid'),
  invalid_container_id: entry('invalid_input', 'a container id that runc would refuse or misread'),
  invalid_signal: entry('invalid_input', 'a signal name or number runc would refuse'),
  invalid_url: entry('invalid_input', 'a malformed %-escape or an over-long path segment'),
  invalid_content_length: entry('invalid_input', 'the body does not match its Content-Length'),
  bad_request: entry(
    'invalid_input',
    'a request the HTTP layer refused for another reason (detail says why)',
  ),
  malformed_request: entry('malformed_request', 'not HTTP at all (431 when the headers are over 16 KiB)'),
  body_too_large: entry('too_large', "the body is over the route's limit (16 KiB; 256 KiB to create)"),
  unsupported_media_type: entry(
    'unsupported_media_type',
    'a body that is not JSON (or a tarball where one is due)',
  ),
  route_not_found: entry('not_found', 'no route has this path'),
  method_not_allowed: entry(
    'method_not_allowed',
    'the path exists but not with this method; Allow lists them',
  ),
  // Access.
  token_required: entry('unauthorized', 'no Authorization: Bearer token where one is required'),
  invalid_token: entry('unauthorized', 'a wrong, malformed or revoked token'),
  insufficient_scope: entry('forbidden', "the token's scope is too small for the route"),
  origin_forbidden: entry('forbidden', 'a request on TCP with an Origin header (a browser)'),
  rate_limited: entry('rate_limited', 'too many requests for one token; Retry-After says when to retry'),
  // Containers and their state.
  container_not_found: entry('not_found', 'no container has this id'),
  container_exists: entry('conflict', 'a container with this id exists already'),
  container_already_running: entry('conflict', 'start of a container that is running'),
  container_not_created: entry(
    'conflict',
    'the operation needs a created container (e.g. start while creating)',
  ),
  container_not_running: entry('conflict', 'the operation needs a running container'),
  container_no_terminal: entry(
    'conflict',
    'resize of a container that has no terminal (docker resize without -t)',
  ),
  container_not_stopped: entry('conflict', 'delete of a running or paused container without force'),
  container_not_paused: entry('conflict', 'resume of a container that is not paused'),
  container_paused: entry('conflict', 'the operation is refused while the container is paused'),
  container_stopped: entry('conflict', 'the container has stopped (before or during the operation)'),
  container_monitor_lost: entry('conflict', "the container's conmon is gone: its exit cannot be recorded"),
  // Bundles given by path.
  bundle_path_relative: entry('invalid_input', 'the bundle path is not absolute'),
  bundle_outside_roots: entry('invalid_input', 'the bundle is outside the configured bundle roots'),
  bundle_through_symlink: entry('invalid_input', 'the bundle path passes through a symlink'),
  bundle_not_found: entry('invalid_input', 'the bundle directory does not exist'),
  bundle_is_root: entry('invalid_input', 'the bundle path is a bundle root itself, not a bundle inside it'),
  bundle_not_directory: entry('invalid_input', 'the bundle path is not a directory'),
  bundle_missing_config: entry('invalid_input', 'the bundle has no config.json'),
  bundle_invalid_config: entry(
    'invalid_input',
    'config.json is not valid (bad JSON, a misspelled OCI field)',
  ),
  bundle_missing_rootfs: entry('invalid_input', "the bundle's rootfs does not exist"),
  websocket_required: entry('upgrade_required', 'a WebSocket route was asked for without Upgrade: websocket'),
  sessions_unavailable: entry(
    'not_implemented',
    'interactive sessions need the SOCK_SEQPACKET binding (an optional dependency), which this machine lacks',
  ),
  executable_not_found: entry('invalid_input', 'args[0] is not found in the container (create or exec)'),
  not_executable: entry('invalid_input', 'args[0] is a directory or not executable in the container'),
  invalid_cwd: entry('invalid_input', 'the working directory is missing or not a directory in the container'),
  invalid_user: entry('invalid_input', 'the user or group cannot be used in the container'),
  init_not_available: entry('invalid_input', 'init: true, but the host has no tini'),
  invalid_resources: entry('invalid_input', 'resource limits the host cannot give (e.g. cpus over its CPUs)'),
  // The bundle policy.
  policy_hooks: entry('policy_denied', 'config.json has hooks (host programs run as root)'),
  policy_root_path: entry('policy_denied', 'root.path escapes the bundle or passes through a symlink'),
  policy_mount_source: entry('policy_denied', 'a bind mount of a host path the policy does not allow'),
  policy_mount_type: entry('policy_denied', 'a mount type (or a proc/sysfs destination) the policy refuses'),
  policy_namespace: entry('policy_denied', 'a required namespace is missing or joins an existing one'),
  policy_capability: entry('policy_denied', "a capability beyond Docker's default set"),
  policy_cwd: entry('policy_denied', 'a working directory that is relative or under /proc, /sys or /dev'),
  policy_devices: entry('policy_denied', 'access to every device'),
  policy_no_new_privileges: entry('policy_denied', 'noNewPrivileges false or absent'),
  policy_seccomp: entry('policy_denied', 'no seccomp profile, where the policy requires one'),
  policy_cgroups_path: entry('policy_denied', 'a caller-chosen linux.cgroupsPath'),
  // Managed bundles and rootfs uploads.
  bundle_id_not_found: entry('not_found', 'no managed bundle has this id'),
  bundle_exists: entry('conflict', 'a managed bundle with this id (or directory) exists already'),
  bundle_in_use: entry('conflict', 'the managed bundle is used by a container'),
  bundle_rootfs_missing: entry('conflict', "the managed bundle's rootfs has not been uploaded yet"),
  bundle_private: entry('conflict', 'the managed bundle is private to one container'),
  bundle_rootfs_shared: entry('conflict', "the rootfs is shared by another container's bundle"),
  bundle_config_modified: entry('conflict', "a managed bundle's config.json changed after runcd wrote it"),
  import_root_not_configured: entry('invalid_input', 'rootfs.path given, but runcd has no --import-root'),
  rootfs_outside_import_roots: entry('invalid_input', 'rootfs.path is outside the import roots'),
  rootfs_not_found: entry('invalid_input', 'rootfs.path does not exist'),
  rootfs_unsafe_path: entry('invalid_input', 'a tarball entry with .. or an absolute path'),
  rootfs_through_symlink: entry('invalid_input', 'a tarball entry that would be written through a symlink'),
  rootfs_link_outside: entry('invalid_input', 'a hard link in the tarball pointing outside the rootfs'),
  rootfs_link_invalid: entry('invalid_input', 'a hard link in the tarball to an entry that is not there'),
  rootfs_device_node: entry('invalid_input', 'a device node in the tarball'),
  rootfs_entry_unsupported: entry('invalid_input', 'a tarball entry type runcd does not write'),
  rootfs_entry_failed: entry('invalid_input', 'a tarball entry could not be written'),
  rootfs_invalid_archive: entry('invalid_input', 'the tarball is corrupt or truncated'),
  rootfs_not_a_tarball: entry('invalid_input', 'the upload is not a tar (or gzip-compressed tar) archive'),
  rootfs_too_large: entry(
    'too_large',
    'the rootfs is over --max-rootfs-bytes (or the archive over twice that)',
  ),
  // Images (docker load / import).
  image_archive_invalid: entry('invalid_input', 'the image archive is not a docker save or OCI layout'),
  image_archive_empty: entry('invalid_input', 'the image archive holds no image'),
  image_archive_entry_outside: entry('invalid_input', 'an image archive entry points outside the archive'),
  image_archive_too_many_images: entry(
    'invalid_input',
    'the image archive holds more images than runcd loads at once',
  ),
  image_layer_unsupported: entry('invalid_input', 'an image layer in a format runcd cannot unpack'),
  image_archive_too_large: entry('too_large', 'the image archive is over the size quota'),
  image_tools_missing: entry('runtime_failure', 'skopeo or umoci is not installed on the host'),
  // Named volumes (docker volume, -v NAME:/path).
  volume_not_found: entry('not_found', 'no named volume has this name'),
  volume_in_use: entry('conflict', 'the volume is mounted by a container; remove the container first'),
  invalid_volume_name: entry(
    'invalid_input',
    'a volume name outside [a-zA-Z0-9][a-zA-Z0-9_.-], 2 to 64 characters',
  ),
  // Copies into and out of containers (docker cp).
  container_path_not_found: entry('not_found', "a copy's path does not exist in the container's rootfs"),
  container_path_invalid: entry(
    'invalid_input',
    "a copy's path or archive entry climbs out of the rootfs, passes through a file, or is not a directory",
  ),
  container_path_on_mount: entry(
    'invalid_input',
    "a copy's path is on one of the container's mounts (a bind mount, a tmpfs, /proc), not its rootfs",
  ),
  container_rootfs_readonly: entry('conflict', 'a copy into a container whose rootfs is read-only'),
  container_archive_too_large: entry(
    'too_large',
    'an archive copied into a container is over the size or entry bound',
  ),
  image_tool_timeout: entry('timeout', 'skopeo or umoci did not finish in time'),
  // Registries (pull, push).
  image_reference_invalid: entry(
    'invalid_input',
    'an image reference that is not HOST[:PORT]/NAME[:TAG|@sha256:DIGEST] (runcd never contacts Docker Hub)',
  ),
  image_not_found: entry(
    'not_found',
    'runcd has no image of this name (push) or the registry has none (pull)',
  ),
  image_platform_missing: entry('not_found', "the registry's image has no manifest for this host's platform"),
  image_layer_too_large: entry(
    'too_large',
    'a layer of the image is over --max-layer-bytes or the rootfs quota',
  ),
  image_in_use: entry('conflict', 'the image name is taken by an image that containers use'),
  registry_denied: entry('forbidden', 'the registry refused the credentials (or sent none were given)'),
  registry_failed: entry(
    'bad_gateway',
    'the registry is unreachable, speaks another protocol, fails TLS, or failed the copy; detail says which',
  ),
  registry_timeout: entry('timeout', 'the registry did not answer in time'),
  images_unavailable: entry('not_implemented', 'this daemon was started without the registry tools'),
  // Networks (CNI) and published ports.
  invalid_network_name: entry('invalid_input', 'a network name that is not 1-63 of A-Z a-z 0-9 _ . -'),
  network_not_found: entry('not_found', 'no network has this name (create it with POST /networks)'),
  network_exists: entry('conflict', 'a network with this name exists already'),
  network_reserved_name: entry(
    'invalid_input',
    'none and host are network modes, not names a network can take',
  ),
  network_in_use: entry('conflict', 'the network has containers on it; delete them first'),
  network_subnet_invalid: entry(
    'invalid_input',
    'the subnet is not IPv4 CIDR /8 to /29 with its host bits zero',
  ),
  network_subnet_overlap: entry('conflict', 'the subnet overlaps another network or a host interface'),
  network_bridge_taken: entry(
    'conflict',
    'another network, or an interface of the host, has the bridge name',
  ),
  network_namespace_shared: entry(
    'invalid_input',
    'networks given, but the bundle has no network namespace of its own',
  ),
  invalid_port_mapping: entry('invalid_input', 'a published port without networks, or published twice'),
  port_in_use: entry('conflict', 'the host port is taken (by a host process or another container)'),
  network_aliases_unsupported: entry(
    'invalid_input',
    "aliases given without a user network (the default network, like Docker's default bridge, has no names)",
  ),
  network_already_connected: entry('conflict', 'the container is on this network already'),
  network_not_connected: entry('conflict', 'the container is not on this network'),
  network_mode_none: entry(
    'conflict',
    'the container was created with network none (no namespace of its own to attach): recreate it on a network',
  ),
  network_carries_ports: entry(
    'conflict',
    "the container's published ports go through this network; it cannot be disconnected from it",
  ),
  network_setup_failed: entry(
    'runtime_failure',
    'a CNI plugin failed to set up or tear down; detail has its words',
  ),
  // The runtime.
  runtime_create_failed: entry('runtime_rejected', 'runc refused the bundle; detail has its words'),
  runtime_update_failed: entry('runtime_rejected', 'runc update refused the new limits'),
  runtime_failed: entry('runtime_failure', "runc failed for a reason that is not the caller's"),
  runtime_timeout: entry('timeout', 'runc did not answer in time (its process group was killed)'),
  stop_timeout: entry('timeout', 'the container did not stop in time after SIGKILL'),
  runtime_busy: entry('busy', 'too many runtime processes running and queued; Retry-After says when'),
  internal_error: entry('internal', 'a bug in runcd; the daemon log has the details'),
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

/** The codes of one kind: a ConflictError can only carry a conflict's code. */
export type CodeOfKind<K extends ErrorKind> = {
  [C in ErrorCode]: (typeof ERROR_CATALOG)[C]['kind'] extends K ? C : never;
}[ErrorCode];

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CATALOG, value);
}

export function statusOf(code: ErrorCode): { status: number; title: string } {
  return KIND_STATUS[ERROR_CATALOG[code].kind];
}
