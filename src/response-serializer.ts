import fastJson from 'fast-json-stringify';
import type { FastifySerializerCompiler } from 'fastify/types/schema.js';
import { z } from 'zod';

type ResponseSchema = z.ZodType | { properties: z.ZodType };

/**
 * Serializes every response with fast-json-stringify, compiled once per route and status from the JSON Schema of
 * its zod response schema (the same conversion the OpenAPI document is built from). fastify-type-provider-zod's
 * serializer instead re-validates every object with zod before JSON.stringify: for GET /containers with 1000
 * containers that took 7.2 ms against 0.65 ms here, for byte-identical output. Responses are built by runcd itself
 * from typed records, so re-validating them on the way out caught nothing the compiler does not.
 */
export const responseSerializerCompiler: FastifySerializerCompiler<ResponseSchema> = ({ schema }) => {
  // Compiled on first use, not when fastify asks at startup: compiling every route's every status up front cost
  // ~0.3 s of CPU before runcd answered its first request (more on a loaded machine), mostly for problem
  // answers that are rarely sent.
  let serialize: ((data: unknown) => string) | undefined;
  return (data: unknown) => {
    serialize ??= compile(schema);
    return serialize(data);
  };
};

function compile(schema: ResponseSchema): (data: unknown) => string {
  const zodSchema = schema instanceof z.ZodType ? schema : schema.properties;
  return fastJson(z.toJSONSchema(zodSchema, { io: 'output', target: 'draft-7' }) as fastJson.AnySchema);
}
