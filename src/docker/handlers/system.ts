import { RUNCD_VERSION } from '../../version.js';
import { DOCKER_API_VERSION, DOCKER_MIN_API_VERSION } from '../docker-app.js';
import type { DockerContext } from '../docker-context.js';
import { IMAGE_LABEL } from '../translate/images.js';
import { dockerArch } from './system-facts.js';
import type { FastifyInstance } from 'fastify';
import { arch, cpus, hostname, release, totalmem } from 'node:os';

/** GET /_ping, /version and /info: what the docker CLI asks before anything else. */
export function registerSystemRoutes(app: FastifyInstance, context: DockerContext): void {
  const { containers, deps } = context;
  app.get('/_ping', { config: { access: 'read' } }, async (_request, reply) =>
    reply.header('cache-control', 'no-cache').type('text/plain; charset=utf-8').send('OK'),
  );
  app.get('/version', { config: { access: 'read' } }, async () => ({
    Platform: { Name: 'runcd' },
    Components: [
      {
        Name: 'Engine',
        Version: RUNCD_VERSION,
        Details: {
          ApiVersion: DOCKER_API_VERSION,
          MinAPIVersion: DOCKER_MIN_API_VERSION,
          GitCommit: 'runcd',
          GoVersion: `node${process.versions.node}`,
          Os: 'linux',
          Arch: dockerArch(),
          KernelVersion: release(),
          Experimental: 'false',
          BuildTime: '',
        },
      },
    ],
    Version: RUNCD_VERSION,
    ApiVersion: DOCKER_API_VERSION,
    MinAPIVersion: DOCKER_MIN_API_VERSION,
    GitCommit: 'runcd',
    GoVersion: `node${process.versions.node}`,
    Os: 'linux',
    Arch: dockerArch(),
    KernelVersion: release(),
    BuildTime: '',
  }));
  app.get('/info', { config: { access: 'read' } }, async () => {
    const all = containers.list();
    const count = (status: string) => all.filter((container) => container.status === status).length;
    return {
      ID: 'runcd',
      Containers: all.length,
      ContainersRunning: count('running'),
      ContainersPaused: count('paused'),
      ContainersStopped: count('stopped'),
      Images: deps.bundles?.list().filter((bundle) => bundle.labels[IMAGE_LABEL] !== undefined).length ?? 0,
      Driver: 'runcd-bundles',
      OperatingSystem: 'linux',
      OSType: 'linux',
      Architecture: arch(),
      KernelVersion: release(),
      NCPU: cpus().length,
      MemTotal: totalmem(),
      Name: hostname(),
      ServerVersion: RUNCD_VERSION,
      DefaultRuntime: 'runc',
      Runtimes: { runc: { path: 'runc' } },
      SecurityOptions: ['name=seccomp,profile=builtin'],
      Labels: [],
      Warnings: [],
    };
  });
}
