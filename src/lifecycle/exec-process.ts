import type { OciProcess } from '../runtime/oci.js';
import type { ExecBody } from '../schemas/container.js';
import type { RunningConfig } from './running-config.js';

/** For a container adopted from elsewhere, without runcd's copy of its config: no capabilities at all. */
const BARE_PROCESS: OciProcess = { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' };

/**
 * The process settings exec starts from: the `process` of the config runc runs (runcd's own copy, since the
 * caller's config.json may have changed since it was checked), remembered per container.
 */
export class ExecProcessTemplates {
  private readonly templates = new Map<string, OciProcess>();

  constructor(private readonly config: RunningConfig) {}

  remember(id: string, template: OciProcess): void {
    this.templates.set(id, template);
  }

  forget(id: string): void {
    this.templates.delete(id);
  }

  async of(id: string): Promise<OciProcess> {
    const cached = this.templates.get(id);
    if (cached) return cached;
    const template = (await this.config.read(id))?.process ?? BARE_PROCESS;
    this.templates.set(id, template);
    return template;
  }
}

/** The container's own process settings (user, capabilities, rlimits...) with the caller's command on top. */
export function buildExecProcess(
  template: OciProcess,
  request: Omit<ExecBody, 'timeoutSeconds'>,
): OciProcess {
  const env = new Map<string, string>();
  for (const entry of [...(template.env ?? []), ...(request.env ?? [])]) {
    const eq = entry.indexOf('=');
    env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  let user = template.user;
  if (request.user) {
    const [uid, gid] = request.user.split(':').map(Number);
    user = { uid: uid!, gid: gid ?? uid! };
  }
  return {
    ...template,
    terminal: false,
    args: request.args,
    env: [...env].map(([key, value]) => `${key}=${value}`),
    cwd: request.cwd ?? template.cwd ?? '/',
    user,
  };
}
