import Database from 'better-sqlite3';

export type Db = Database.Database;

/** Each entry upgrades the schema by one version (PRAGMA user_version); never edit a released entry. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE containers (
     id            TEXT PRIMARY KEY,
     status        TEXT NOT NULL,
     bundle        TEXT NOT NULL,
     rootfs        TEXT NOT NULL,
     config_digest TEXT NOT NULL,
     labels        TEXT NOT NULL DEFAULT '{}',
     pid           INTEGER NOT NULL DEFAULT 0,
     oci_version   TEXT NOT NULL DEFAULT '',
     owner         TEXT NOT NULL DEFAULT '',
     created       TEXT NOT NULL,
     started_at    TEXT,
     finished_at   TEXT,
     exit_code     INTEGER,
     oom_killed    INTEGER NOT NULL DEFAULT 0
   ) STRICT`,
  `ALTER TABLE containers ADD COLUMN restart_policy TEXT NOT NULL DEFAULT '{"name":"no"}';
   ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE containers ADD COLUMN stop_signal INTEGER NOT NULL DEFAULT 15;
   ALTER TABLE containers ADD COLUMN stop_timeout INTEGER NOT NULL DEFAULT 10;
   CREATE TABLE events (
     seq          INTEGER PRIMARY KEY AUTOINCREMENT,
     time         TEXT NOT NULL,
     type         TEXT NOT NULL,
     container_id TEXT NOT NULL,
     attributes   TEXT NOT NULL DEFAULT '{}'
   ) STRICT;
   CREATE INDEX events_time ON events (time);
   CREATE TABLE exit_tombstones (
     id          TEXT PRIMARY KEY,
     exit_code   INTEGER,
     oom_killed  INTEGER NOT NULL,
     finished_at TEXT,
     removed_at  TEXT NOT NULL
   ) STRICT`,
  // API tokens: only the SHA-256 of each secret is stored, never the secret itself.
  `CREATE TABLE tokens (
     name       TEXT PRIMARY KEY,
     scope      TEXT NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
     hash       BLOB NOT NULL UNIQUE,
     created_at TEXT NOT NULL
   ) STRICT`,
  // Managed bundles (issue 5): runcd wrote their config.json (config_digest is of those bytes) and rootfs.
  // bundle_containers says which containers use which bundle, so a bundle in use cannot be deleted.
  `CREATE TABLE bundles (
     id            TEXT PRIMARY KEY,
     path          TEXT NOT NULL UNIQUE,
     created       TEXT NOT NULL,
     labels        TEXT NOT NULL DEFAULT '{}',
     spec          TEXT NOT NULL,
     config_digest TEXT NOT NULL,
     rootfs_source TEXT NOT NULL CHECK (rootfs_source IN ('import', 'upload', 'shared')),
     rootfs_origin TEXT,
     rootfs_ready  INTEGER NOT NULL DEFAULT 0,
     size_bytes    INTEGER NOT NULL DEFAULT 0,
     file_count    INTEGER NOT NULL DEFAULT 0,
     private_to    TEXT
   ) STRICT;
   CREATE TABLE bundle_containers (
     container_id TEXT NOT NULL,
     bundle_id    TEXT NOT NULL REFERENCES bundles (id) ON DELETE CASCADE,
     PRIMARY KEY (container_id, bundle_id)
   ) STRICT;
   CREATE INDEX bundle_containers_bundle ON bundle_containers (bundle_id)`,
  // GET /readyz proves the store takes writes by rewriting this one row (a real, synced write, not a lock probe).
  `CREATE TABLE readiness_probe (
     id         INTEGER PRIMARY KEY CHECK (id = 1),
     checked_at TEXT NOT NULL
   ) STRICT`,
  // issue 13: what an operation in flight had started (so a restarted runcd finishes it) and a lost monitor.
  `ALTER TABLE containers ADD COLUMN intent TEXT CHECK (intent IN ('restart', 'delete'));
   ALTER TABLE containers ADD COLUMN monitor_lost INTEGER NOT NULL DEFAULT 0`,
  // issue 14: auto-removal (`docker run --rm`) is the container's, so a restarted runcd still removes it.
  `ALTER TABLE containers ADD COLUMN auto_remove INTEGER NOT NULL DEFAULT 0`,
  // issue 16: CNI networks runcd made, and each container's networks, published ports and CNI state. `attachment`
  // is written before each plugin chain runs (its result null until ADD returns), so a runcd killed mid-ADD still
  // knows what to DEL; it is null while the container has nothing set up.
  `CREATE TABLE networks (
     name       TEXT PRIMARY KEY,
     bridge     TEXT NOT NULL UNIQUE,
     subnet     TEXT NOT NULL UNIQUE,
     gateway    TEXT NOT NULL,
     created    TEXT NOT NULL,
     labels     TEXT NOT NULL DEFAULT '{}',
     is_default INTEGER NOT NULL DEFAULT 0
   ) STRICT;
   CREATE TABLE container_networks (
     container_id TEXT PRIMARY KEY,
     networks     TEXT NOT NULL,
     ports        TEXT NOT NULL DEFAULT '[]',
     attachment   TEXT
   ) STRICT`,
  // issue 16, names on user networks: the names besides its id a container answers to there (aardvark-dns).
  `ALTER TABLE container_networks ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]'`,
  // issue 17: a container's Docker name where it is not its runc id (docker rename; a create whose name's id is
  // still taken). A container without a row is named by its id.
  `CREATE TABLE docker_names (
     container_id TEXT PRIMARY KEY,
     name         TEXT NOT NULL UNIQUE
   ) STRICT`,
  // issue 17: named volumes (docker volume create, -v NAME:/path): STATE_DIR/volumes/NAME/_data, owned by runcd.
  `CREATE TABLE volumes (
     name    TEXT PRIMARY KEY,
     created TEXT NOT NULL,
     labels  TEXT NOT NULL DEFAULT '{}'
   ) STRICT`,
];

/**
 * Durability. In WAL mode with synchronous=NORMAL a commit is in the WAL (the kernel's page cache) when it
 * returns: it survives runcd crashing or being SIGKILLed at any instant, and only an OS crash or power loss can
 * lose the commits since the last checkpoint. Such a crash also kills every container, empties runc's root (/run
 * is tmpfs) and can lose conmon's exit files (conmon does not fsync them either); at the next start the
 * reconcile marks every row runc no longer knows as stopped. So a lost status, exit or event write ends in the
 * same state it would have reached anyway, and NORMAL saves an fsync per write (0.5 ms each here, a dozen per lifecycle).
 *
 * The one write that must reach the disk first is the `creating` row of a new container (`commitDurably`): it is
 * how runcd knows, after any crash, that conmon may have left files and a runc container behind for that id.
 * A delete lost to a power loss brings the row back as stopped (its files are gone); deleting it again is enough.
 */
export function openDatabase(path: string): Db {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

/** Runs `write` as one transaction whose commit is fsynced before this returns (synchronous=FULL for it). */
export function commitDurably(db: Db, write: () => void): void {
  db.pragma('synchronous = FULL');
  try {
    db.transaction(write)();
  } finally {
    db.pragma('synchronous = NORMAL');
  }
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `database schema version ${current} is newer than this runcd understands (${MIGRATIONS.length}); upgrade runcd`,
    );
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}
