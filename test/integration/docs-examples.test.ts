import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CreateNetworkBody } from '../../src/schemas/network.js';
import { PullImageBody, PushImageBody } from '../../src/schemas/image.js';
import type { z } from 'zod';
import { generateOpenApiDocument } from '../../src/openapi.js';
import { ProblemSchema } from '../../src/schemas/common.js';
import { CreateBundleBody, UpdateResourcesBody } from '../../src/schemas/bundle.js';
import { CreateContainerBody, ExecBody } from '../../src/schemas/container.js';
import { issueToken } from '../../src/security/tokens.js';
import { makeSandbox, REPO_ROOT, startInProcess } from '../helpers/sandbox.js';

interface Example {
  summary: string;
  value: Record<string, unknown>;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
  components: { examples: Record<string, Example> };
}
interface Operation {
  operationId: string;
  requestBody?: { content: Record<string, { examples?: Record<string, { $ref: string }> }> };
  responses: Record<string, { content?: Record<string, { examples?: Record<string, { $ref: string }> }> }>;
}

/** Every operation that takes a JSON body, with the schema its examples must pass. */
const BODY_SCHEMAS: Record<string, z.ZodType> = {
  createContainer: CreateContainerBody,
  execInContainer: ExecBody,
  createBundle: CreateBundleBody,
  updateContainerResources: UpdateResourcesBody,
  createNetwork: CreateNetworkBody,
  pullImage: PullImageBody,
  pushImage: PushImageBody,
};
/** Operations whose body is a byte stream (a tarball): no JSON examples, but a binary schema per media type. */
const BINARY_BODIES = ['uploadBundleRootfs', 'execWithStdin'];

/** Built from the validation context (`invalid_${context}`) by app.ts rather than written out. */
const VALIDATION_CODES = ['invalid_body', 'invalid_query'];

function resolve(spec: Spec, reference: { $ref: string }): Example {
  const name = reference.$ref.replace('#/components/examples/', '');
  const example = spec.components.examples[name];
  if (!example) throw new Error(`dangling example reference ${reference.$ref}`);
  return example;
}

/** Every string literal in src/ and routes/: a problem code in an example must be one the code can produce. */
function sourceText(): string {
  const texts: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith('.ts') && !path.includes(`${join('src', 'docs')}`))
        texts.push(readFileSync(path, 'utf8'));
    }
  };
  walk(join(REPO_ROOT, 'src'));
  walk(join(REPO_ROOT, 'routes'));
  return texts.join('\n');
}

t.test('every request body and every error response has examples that fit their schema', async (t) => {
  const spec = (await generateOpenApiDocument()) as Spec;
  const source = sourceText();
  let errorResponses = 0;
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const where = `${method.toUpperCase()} ${path}`;
      if (operation.requestBody && BINARY_BODIES.includes(operation.operationId)) {
        const media = Object.entries(operation.requestBody.content) as Array<[string, { schema?: unknown }]>;
        t.ok(media.length > 0, `${where}: the media types it takes`);
        for (const [type, content] of media) {
          t.match(content.schema, { type: 'string', format: 'binary' }, `${where}: ${type} is a byte stream`);
        }
      } else if (operation.requestBody) {
        const schema = BODY_SCHEMAS[operation.operationId];
        t.ok(schema, `${where}: a body schema to check its examples against`);
        const examples = Object.values(operation.requestBody.content['application/json']?.examples ?? {});
        t.ok(examples.length > 0, `${where}: request body examples`);
        for (const reference of examples) {
          const example = resolve(spec, reference);
          t.ok(schema?.safeParse(example.value).success, `${where}: "${example.summary}" is a valid body`);
        }
      }
      for (const [statusText, response] of Object.entries(operation.responses)) {
        const status = Number(statusText);
        if (status < 400) continue;
        errorResponses++;
        t.same(
          Object.keys(response.content ?? {}),
          ['application/problem+json'],
          `${where} ${status}: problem+json`,
        );
        const examples = Object.values(response.content?.['application/problem+json']?.examples ?? {});
        t.ok(examples.length > 0, `${where} ${status}: has examples`);
        for (const reference of examples) {
          const { value } = resolve(spec, reference);
          const parsed = ProblemSchema.safeParse(value);
          t.ok(parsed.success, `${where} ${status}: ${String(value.code)} is a problem document`);
          t.equal(value.status, status, `${where} ${status}: ${String(value.code)} has that status`);
          t.equal(value.type, `https://runcd.dev/problems/${String(value.code)}`);
          t.ok(
            source.includes(`'${String(value.code)}'`) || VALIDATION_CODES.includes(String(value.code)),
            `${String(value.code)} is a code runcd produces`,
          );
        }
      }
    }
  }
  t.ok(errorResponses > 100, `all ${errorResponses} error responses were checked`);
});

t.test('the examples that do not depend on a container are what runcd really answers', async (t) => {
  const sandbox = makeSandbox(t, 'examples');
  const daemon = await startInProcess(t, sandbox, { tcp: { host: '127.0.0.1', port: 0 } });
  const readToken = issueToken(daemon.tokens, 'ci', 'read');
  const spec = (await generateOpenApiDocument()) as Spec;
  const example = (name: string) => spec.components.examples[name]?.value;

  const unix = async (method: string, url: string, payload?: string, headers: Record<string, string> = {}) =>
    JSON.parse(
      (
        await daemon.app.inject({
          method: method as 'GET',
          url,
          headers: payload === undefined ? headers : { 'content-type': 'application/json', ...headers },
          ...(payload === undefined ? {} : { payload }),
        })
      ).body,
    ) as Record<string, unknown>;
  const tcp = async (method: string, url: string, headers: Record<string, string> = {}) =>
    JSON.parse((await daemon.tcpApp!.inject({ method: method as 'GET', url, headers })).body) as Record<
      string,
      unknown
    >;

  const cases: Array<[string, Promise<Record<string, unknown>>]> = [
    ['container_not_found', unix('GET', '/containers/mycontainer')],
    ['invalid_container_id', unix('GET', '/containers/-rf')],
    ['invalid_json', unix('POST', '/containers', '{')],
    ['invalid_body', unix('POST', '/containers', '{"id":"a"}')],
    ['execInContainer.invalid_body', unix('POST', '/containers/a/exec', '{"args":["ls"],"cwd":"tmp"}')],
    ['invalid_signal', unix('POST', '/containers/a/kill?signal=KILLX')],
    ['invalid_query', unix('GET', '/containers?label=app')],
    ['waitContainer.invalid_query', unix('POST', '/containers/a/wait?condition=bogus')],
    ['containerLogs.invalid_query', unix('GET', '/containers/a/logs?tail=-1')],
    ['containerStats.invalid_query', unix('GET', '/containers/a/stats?interval=0')],
    ['streamEvents.invalid_query', unix('GET', '/events?since=yesterday')],
    ['body_too_large', unix('POST', '/containers/a/exec', JSON.stringify({ args: ['x'.repeat(17_000)] }))],
    [
      'unsupported_media_type',
      daemon.app
        .inject({
          method: 'POST',
          url: '/containers',
          headers: { 'content-type': 'text/plain' },
          payload: 'hi',
        })
        .then((response) => JSON.parse(response.body) as Record<string, unknown>),
    ],
    ['token_required', tcp('GET', '/containers')],
    ['invalid_token', tcp('GET', '/containers', { authorization: 'Bearer rcd_not-a-token' })],
    ['insufficient_scope', tcp('POST', '/containers/a/kill', { authorization: `Bearer ${readToken}` })],
    ['origin_forbidden', tcp('GET', '/containers', { origin: 'https://example.com' })],
  ];
  for (const [name, answer] of cases) {
    t.same(await answer, example(name), `the ${name} example is runcd's own answer`);
  }
});
