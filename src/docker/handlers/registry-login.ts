import type { FastifyInstance } from 'fastify';
import { type ImagePuller, RegistryPullError } from '../../bundles/image-puller.js';
import { DockerError } from '../docker-errors.js';

/**
 * `docker login HOST` (POST /auth): the credentials are checked against the registry before the CLI stores
 * them; runcd keeps them too (state dir, 0600) for pulls that send no X-Registry-Auth. The password is never in
 * an answer, a log line or the audit log (which records argv, and skopeo gets the credentials in a file).
 */
export function registerRegistryLogin(app: FastifyInstance, puller: ImagePuller): void {
  app.post('/auth', { config: { access: 'admin' } }, async (request) => {
    const body = (request.body ?? {}) as { username?: unknown; password?: unknown; serveraddress?: unknown };
    if (typeof body.username !== 'string' || body.username === '' || typeof body.password !== 'string') {
      throw new DockerError(400, 'docker login needs a username and a password');
    }
    const server = typeof body.serveraddress === 'string' ? body.serveraddress : '';
    const registry = server.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
    if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(registry) || /(^|\.)docker\.io$/i.test(registry)) {
      throw new DockerError(
        400,
        `docker login: name a registry as HOST[:PORT] (got "${server}"); runcd does not contact Docker Hub`,
      );
    }
    try {
      await puller.login(registry, { username: body.username, password: body.password });
    } catch (error) {
      if (error instanceof RegistryPullError) {
        throw new DockerError(
          // A refusal at login is Docker's 401 (the CLI prompts again only on a pull's 401, not a login's).
          error.status === 403 ? 401 : error.status === 499 ? 400 : error.status,
          error.message.replace(/^pulling /, 'login to '),
        );
      }
      throw error;
    }
    return { Status: 'Login Succeeded', IdentityToken: '' };
  });
}
