import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { generateOpenApiDocument, serializeOpenApi } from '../src/openapi.js';
import { REPO_ROOT } from './helpers/sandbox.js';

t.test('the committed openapi/openapi.json matches what the server generates', async (t) => {
  const committed = readFileSync(join(REPO_ROOT, 'openapi', 'openapi.json'), 'utf8');
  const generated = serializeOpenApi(await generateOpenApiDocument());
  t.equal(committed, generated, 'openapi/openapi.json is stale: run `npm run openapi` and commit it');
});

t.test('the spec documents every lifecycle operation with its errors', async (t) => {
  const spec = (await generateOpenApiDocument()) as {
    paths: Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>;
  };
  const operations = Object.values(spec.paths).flatMap((methods) => Object.values(methods));
  const ids = operations.map((operation) => operation.operationId);
  for (const id of [
    'createContainer',
    'listContainers',
    'getContainer',
    'startContainer',
    'execInContainer',
    'killContainer',
    'deleteContainer',
  ]) {
    t.ok(ids.includes(id), `${id} is documented`);
  }
  t.ok(spec.paths['/containers/{id}/exec']?.post?.responses['409'], 'exec documents its 409');
});
