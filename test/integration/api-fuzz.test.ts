import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { Agent, request } from 'undici';
import { makeBusyboxRootfs, tarball } from '../helpers/rootfs.js';
import { DaemonProcess, makeSandbox, REPO_ROOT } from '../helpers/sandbox.js';
import { arbitraryFor, type Json, type JsonSchema } from '../helpers/schema-arbitrary.js';

/**
 * A schema-driven fuzz of every operation in the committed OpenAPI document, against a real runcd (its own
 * process, so a crash is a finding rather than the end of the test run) on a private sandbox:
 * - requests the document allows must never be refused by validation (a 400 with a validation code) nor get a
 *   5xx: a 404 for a container that does not exist, a 409 for one in the wrong state, are fine;
 * - requests it forbids (an unknown parameter or field, a wrong type, a missing field, a bad id, broken JSON, a
 *   body that is not JSON) must get a 4xx, never a 5xx.
 * Seeded: RUNCD_FUZZ_SEED=N replays a run (the seed is printed); RUNCD_FUZZ_RUNS sets requests per operation
 * and kind (default 12). Everything it creates (containers, bundles) lives in the sandbox and goes with it.
 */

const SEED = Number(process.env.RUNCD_FUZZ_SEED ?? randomInt(2 ** 31));
const RUNS = Number(process.env.RUNCD_FUZZ_RUNS ?? 12);

/** The codes runcd's validation answers with (src/app.ts validationCode), as opposed to a domain's refusal. */
const VALIDATION_CODES = new Set([
  'invalid_body',
  'invalid_query',
  'invalid_params',
  'invalid_headers',
  'invalid_container_id',
  'invalid_signal',
  'invalid_json',
]);

/** Streams and long polls: the status and headers are what the fuzz checks; the body is left unread. */
const STREAMING = new Set(['streamEvents', 'containerLogs', 'containerStats', 'waitContainer']);

const MAX_REPORTED = 20;

/**
 * Operations that talk to a registry: their generated references are pointed at a closed loopback port (the
 * fuzz never reaches past 127.0.0.1), where the registry's failure is the declared 502, not a finding.
 */
const REGISTRY_OPERATIONS = new Set(['pullImage', 'pushImage']);
const CLOSED_REGISTRY = '127.0.0.1:1';

function toClosedRegistry(operationId: string, fuzz: FuzzRequest): FuzzRequest {
  if (!REGISTRY_OPERATIONS.has(operationId) || typeof fuzz.body !== 'string') return fuzz;
  try {
    const body = JSON.parse(fuzz.body) as Record<string, unknown>;
    if (!body || typeof body !== 'object') return fuzz;
    for (const field of ['reference', 'image']) {
      const value = body[field];
      if (typeof value === 'string' && value.includes('/'))
        body[field] = `${CLOSED_REGISTRY}${value.slice(value.indexOf('/'))}`;
    }
    return { ...fuzz, body: JSON.stringify(body) };
  } catch {
    return fuzz;
  }
}

function ascii(value: unknown): string {
  return (JSON.stringify(value) ?? 'undefined').replace(
    /[^\x20-\x7e]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

interface Problem {
  code?: string;
  detail?: string;
}

interface Parameter {
  in: 'path' | 'query';
  name: string;
  required?: boolean;
  schema: JsonSchema;
}

interface Operation {
  operationId: string;
  tags?: string[];
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { content?: Record<string, unknown> }>;
}

interface FuzzRequest {
  method: string;
  path: string;
  query: Array<[string, string]>;
  contentType?: string;
  body?: string | Buffer;
  /** One of the media types the document declares for the operation's 200, when it declares several. */
  accept?: string;
}

const document = JSON.parse(readFileSync(join(REPO_ROOT, 'openapi', 'openapi.json'), 'utf8')) as {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, JsonSchema> };
};
const resolveRef = (ref: string): JsonSchema => {
  const name = ref.replace('#/components/schemas/', '');
  const schema = document.components.schemas[name];
  if (!schema) throw new Error(`unresolved ${ref}`);
  return schema;
};

t.test(
  `schema-driven fuzz of the OpenAPI document (seed ${SEED}, ${RUNS} runs per operation and kind)`,
  async (t) => {
    t.comment(`reproduce with RUNCD_FUZZ_SEED=${SEED} RUNCD_FUZZ_RUNS=${RUNS}`);
    const sandbox = makeSandbox(t, 'fuzz');
    const daemon = new DaemonProcess(sandbox);
    t.teardown(() => daemon.close());
    await daemon.start();
    const agent = new Agent({ connect: { socketPath: sandbox.socket } });
    t.teardown(() => agent.close());

    const send = async (fuzz: FuzzRequest, operationId: string) => {
      const search = new URLSearchParams(fuzz.query).toString();
      const response = await request(`http://localhost${fuzz.path}${search ? `?${search}` : ''}`, {
        method: fuzz.method as 'GET',
        dispatcher: agent,
        headers: {
          ...(fuzz.contentType ? { 'content-type': fuzz.contentType } : {}),
          ...(fuzz.accept ? { accept: fuzz.accept } : {}),
        },
        body: fuzz.body,
        headersTimeout: 120_000,
        bodyTimeout: 120_000,
      });
      let problem: Problem | undefined;
      if (STREAMING.has(operationId) && response.statusCode < 300) {
        // Leaving mid-stream is what a client does; undici reports its own abort, which is no finding.
        response.body.on('error', () => undefined);
        response.body.destroy();
      } else {
        const text = await response.body.text();
        if (response.statusCode >= 400) {
          try {
            problem = JSON.parse(text) as Problem;
          } catch {
            problem = { detail: text.slice(0, 200) };
          }
        }
      }
      const mediaType = String(response.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim();
      return { status: response.statusCode, problem, mediaType };
    };

    // Things that exist, so valid requests also reach real containers and bundles, not only 404s.
    const bundlePath = sandbox.bundle('fz', ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done']);
    const live = sandbox.id('live');
    const managed = 'fz-managed';
    const json = (body: unknown) => ({ contentType: 'application/json', body: JSON.stringify(body) });
    const createLive = {
      method: 'POST',
      path: '/containers',
      query: [],
      ...json({ id: live, bundle: bundlePath, start: true }),
    };
    const setup = [
      await send(createLive, 'createContainer'),
      await send(
        {
          method: 'POST',
          path: '/bundles',
          query: [],
          ...json({ id: managed, rootfs: { upload: true }, process: { args: ['sleep', '999999'] } }),
        },
        'createBundle',
      ),
      await send(
        {
          method: 'PUT',
          path: `/bundles/${managed}/rootfs`,
          query: [],
          contentType: 'application/x-tar',
          body: tarball(makeBusyboxRootfs(sandbox.dir)),
        },
        'uploadBundleRootfs',
      ),
    ];
    t.same(
      setup.map((answer) => answer.status),
      [201, 201, 200],
      'fixtures are in place',
    );

    const hints = {
      // Commands and directories busybox has, so execs also run (random names stop at "not found").
      propertyHints: {
        bundle: [bundlePath],
        bundleId: [managed],
        rootfsFrom: [managed],
        args: [['true'], ['pwd'], ['ls', '-l', '/']],
        cwd: ['/', '/bin', '/tmp'],
      },
      resolveRef,
    };
    // Path ids: the fixture of the path's kind, as often as a generated id.
    const idHints = (template: string) => (template.startsWith('/bundles') ? [managed] : [live]);

    const figures: string[] = [];
    let findings = 0;
    const findingKinds = new Map<string, number>();
    let operationIndex = 0;
    for (const [template, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        operationIndex++;
        // The previous operation may have deleted or stopped it: each operation gets a running one to work on.
        await send(
          { method: 'DELETE', path: `/containers/${live}`, query: [['force', 'true']] },
          'deleteContainer',
        );
        await send(createLive, 'createContainer');
        const valid = fc.sample(
          validRequest(method.toUpperCase(), template, operation, hints, idHints(template)),
          {
            seed: SEED + operationIndex,
            numRuns: RUNS,
          },
        );
        const invalid = invalidRequests(operation, valid, SEED + operationIndex);
        const statuses = new Map<string, number>();
        for (const [kind, requests] of [
          ['valid', valid],
          ['invalid', invalid],
        ] as const) {
          for (const fuzz of requests) {
            const answer = await send(
              toClosedRegistry(operation.operationId, fuzz),
              operation.operationId,
            ).catch((error: Error) => ({
              status: 0,
              mediaType: '',
              problem: { code: 'no_answer', detail: error.message } as Problem,
            }));
            // Valid requests' refusals by code, so the figures show what the domain (not validation) said.
            const outcome =
              kind === 'valid' && answer.status >= 400
                ? `${answer.status} ${answer.problem?.code ?? ''}`
                : `${answer.status}`;
            statuses.set(outcome, (statuses.get(outcome) ?? 0) + 1);
            const refusedByValidation =
              answer.status === 400 && VALIDATION_CODES.has(answer.problem?.code ?? '');
            // What a 2xx sends must be a media type the document declares for that status.
            const declared = Object.keys(operation.responses[String(answer.status)]?.content ?? {});
            const undeclared =
              answer.status >= 200 &&
              answer.status < 300 &&
              declared.length > 0 &&
              !declared.includes(answer.mediaType);
            const wrong =
              undeclared ||
              answer.status === 0 ||
              (answer.status >= 500 &&
                !(REGISTRY_OPERATIONS.has(operation.operationId) && answer.status === 502)) ||
              (kind === 'valid' && refusedByValidation) ||
              (kind === 'invalid' && (answer.status < 400 || answer.status >= 500));
            if (wrong) {
              findings++;
              const kindKey = `${operation.operationId} ${kind} -> ${answer.status} ${answer.problem?.code ?? ''}${undeclared ? ` as undeclared ${answer.mediaType}` : ''}`;
              findingKinds.set(kindKey, (findingKinds.get(kindKey) ?? 0) + 1);
              // The first ones in full (ASCII-escaped: generated strings hold any code point), then a count.
              if (findings <= MAX_REPORTED) {
                t.fail(`${operation.operationId}: ${kind} request answered ${answer.status}`, {
                  request: ascii({ ...fuzz, body: fuzz.body?.toString().slice(0, 2000) }),
                  problem: ascii(answer.problem),
                });
              }
            }
          }
        }
        figures.push(
          `${operation.operationId}: ${valid.length} valid, ${invalid.length} invalid; statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
        );
      }
    }
    for (const line of figures) t.comment(line);
    for (const [kindKey, count] of findingKinds) t.comment(`finding: ${kindKey} (${count}x)`);
    if (daemon.exitStatus() !== undefined) t.comment(`runcd exited: ${daemon.output.slice(-4000)}`);
    t.equal(
      findings,
      0,
      `no 5xx, no validation refusal of a valid request, no 2xx/5xx for an invalid one (seed ${SEED})`,
    );
    t.equal(
      (await send({ method: 'GET', path: '/healthz', query: [] }, 'health')).status,
      200,
      'runcd is still up',
    );
    t.equal(daemon.exitStatus(), undefined, 'runcd never exited');
  },
);

interface Hints {
  propertyHints: Record<string, Json[]>;
  resolveRef: (ref: string) => JsonSchema;
}

function validRequest(
  method: string,
  template: string,
  operation: Operation,
  hints: Hints,
  idHints: string[],
): fc.Arbitrary<FuzzRequest> {
  const parameters = operation.parameters ?? [];
  const pathParameters = parameters.filter((parameter) => parameter.in === 'path');
  const queryParameters = parameters.filter((parameter) => parameter.in === 'query');
  const pathArbitrary = fc.record(
    Object.fromEntries(
      pathParameters.map((parameter) => [
        parameter.name,
        fc.oneof(fc.constantFrom(...idHints), arbitraryFor(parameter.schema, hints)),
      ]),
    ),
  );
  const queryArbitrary = fc.record(
    Object.fromEntries(
      queryParameters.map((parameter) => [parameter.name, arbitraryFor(parameter.schema, hints)]),
    ),
    {
      requiredKeys: queryParameters
        .filter((parameter) => parameter.required)
        .map((parameter) => parameter.name),
    },
  );
  const content = operation.requestBody?.content ?? {};
  const mediaTypes = Object.keys(content);
  const bodyArbitrary: fc.Arbitrary<{ contentType?: string; body?: string | Buffer }> =
    mediaTypes.length === 0
      ? fc.constant({})
      : fc
          .constantFrom(...mediaTypes)
          .chain((contentType): fc.Arbitrary<{ contentType: string; body: string | Buffer }> =>
            contentType === 'application/json'
              ? arbitraryFor(content[contentType]!.schema, hints).map((value) => ({
                  contentType,
                  body: JSON.stringify(value),
                }))
              : fc.uint8Array({ maxLength: 512 }).map((bytes) => ({ contentType, body: Buffer.from(bytes) })),
          );
  const produced = Object.keys(operation.responses['200']?.content ?? {});
  const acceptArbitrary =
    produced.length > 1
      ? fc.option(fc.constantFrom(...produced), { nil: undefined })
      : fc.constant(undefined);
  return fc
    .tuple(pathArbitrary, queryArbitrary, bodyArbitrary, acceptArbitrary)
    .map(([path, query, body, accept]) => ({
      method,
      ...(accept ? { accept } : {}),
      path: template.replace(/\{(\w+)\}/g, (_match, name: string) => encodeURIComponent(String(path[name]))),
      query: boundWaits(operation.operationId, Object.entries(query)).flatMap(([name, value]) =>
        (Array.isArray(value) ? value : [value]).map((item): [string, string] => [name, String(item)]),
      ),
      ...body,
    }));
}

/**
 * The document allows waits of a day (a stop timeout, a long poll); the fuzz wants answers, so those values are
 * drawn small: still valid, and still exercising the same code.
 */
function boundWaits(operationId: string, query: Array<[string, Json]>): Array<[string, Json]> {
  const bounded = query.map(([name, value]): [string, Json] =>
    name === 'timeout' && typeof value === 'number' ? [name, Math.min(Math.max(value, 0), 1)] : [name, value],
  );
  if (operationId === 'waitContainer' && !bounded.some(([name]) => name === 'timeout'))
    bounded.push(['timeout', 1]);
  return bounded;
}

const UNKNOWN = 'zzfuzz';

/** Requests the document forbids, each made from a valid one by one change that cannot leave it valid. */
function invalidRequests(operation: Operation, valid: FuzzRequest[], seed: number): FuzzRequest[] {
  const parameters = operation.parameters ?? [];
  const jsonBody = operation.requestBody?.content['application/json']?.schema;
  const bodySchema = jsonBody?.$ref ? resolveRef(jsonBody.$ref as string) : jsonBody;
  const system = operation.tags?.includes('system') ?? false;
  const mutations: Array<(request: FuzzRequest) => FuzzRequest> = [];
  if (!system) mutations.push((request) => ({ ...request, query: [...request.query, [UNKNOWN, '1']] }));
  if (parameters.some((parameter) => parameter.in === 'path')) {
    for (const id of ['-rf', 'a'.repeat(65), '%20x', '.hidden', 'a%00b', '%C3%A9']) {
      mutations.push((request) => ({ ...request, path: request.path.replace(/^(\/\w+\/)[^/]+/, `$1${id}`) }));
    }
  }
  for (const parameter of parameters.filter((candidate) => candidate.in === 'query')) {
    const bad = violatingQueryValue(parameter.schema);
    if (bad !== undefined) {
      mutations.push((request) => ({
        ...request,
        query: [...request.query.filter(([name]) => name !== parameter.name), [parameter.name, bad]],
      }));
    }
  }
  if (bodySchema) {
    const withBody =
      (body: string, contentType = 'application/json') =>
      (request: FuzzRequest) => ({
        ...request,
        contentType,
        body,
      });
    for (const body of ['{"a":', '[]', '"x"', '42', 'null', '']) mutations.push(withBody(body));
    mutations.push(withBody('{}', 'text/plain'));
    const edit = (change: (body: Record<string, Json>) => void) => (request: FuzzRequest) => {
      const body = JSON.parse(request.body as string) as Record<string, Json>;
      change(body);
      return { ...request, contentType: 'application/json', body: JSON.stringify(body) };
    };
    mutations.push(edit((body) => (body[UNKNOWN] = 1)));
    for (const name of (bodySchema.required as string[] | undefined) ?? []) {
      mutations.push(edit((body) => delete body[name]));
    }
    // An object with an unknown field where a field's value goes: a wrong type for scalars and arrays, an
    // unknown key for objects, a non-string value for records (labels).
    for (const name of Object.keys((bodySchema.properties as Record<string, JsonSchema> | undefined) ?? {})) {
      mutations.push(edit((body) => (body[name] = { [UNKNOWN]: [] })));
    }
  }
  if (mutations.length === 0 || valid.length === 0) return [];
  const picks = fc.sample(
    fc.tuple(
      fc.integer({ min: 0, max: valid.length - 1 }),
      fc.integer({ min: 0, max: mutations.length - 1 }),
    ),
    { seed, numRuns: Math.max(RUNS, mutations.length) },
  );
  // Every mutation at least once, then random ones.
  return picks.map(([requestIndex, mutationIndex], index) =>
    mutations[index < mutations.length ? index : mutationIndex]!(valid[requestIndex]!),
  );
}

/** A query value the parameter's schema refuses, when there is one. */
function violatingQueryValue(schema: JsonSchema): string | undefined {
  const resolved = schema.$ref ? resolveRef(schema.$ref as string) : schema;
  const branches = (resolved.anyOf as JsonSchema[] | undefined) ?? [resolved];
  const candidate = 'zz fuzz!';
  for (const option of branches) {
    // A repeatable parameter: one value of it must be an item.
    const branch = option.type === 'array' ? ((option.items as JsonSchema | undefined) ?? {}) : option;
    if (branch.type === 'string' && branch.enum === undefined && branch.pattern === undefined)
      return undefined;
    if (typeof branch.pattern === 'string' && new RegExp(branch.pattern).test(candidate)) return undefined;
  }
  return candidate;
}
