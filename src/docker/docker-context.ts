import type { ContainerService } from '../lifecycle/container-service.js';
import type { ExecSessions as InteractiveSessions } from '../lifecycle/exec-sessions.js';
import type { LogService } from '../lifecycle/log-service.js';
import type { DockerAppDeps } from './docker-app.js';
import type { DockerNames } from './docker-names.js';
import type { ExecSessions } from './exec-sessions.js';

/** What every group of Docker handlers works with: runcd's services, the exec sessions, the shutdown signal. */
export interface DockerContext {
  containers: ContainerService;
  logs: LogService;
  execs: ExecSessions;
  /** Docker names apart from runc ids (docker rename). */
  names: DockerNames;
  /** Interactive processes (exec -t / -i) through conmon; without them those answer 501. */
  sessions: InteractiveSessions | undefined;
  /** Aborted when the listener starts closing: long-lived streams end so shutdown can finish. */
  closing: AbortSignal;
  deps: DockerAppDeps;
}

export interface Query {
  [key: string]: string | string[] | undefined;
}
