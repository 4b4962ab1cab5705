import fc from 'fast-check';

/**
 * fast-check arbitraries from the JSON Schema subset runcd's OpenAPI document uses (zod 4's output): types,
 * enum/const, string length and pattern, number bounds, arrays, objects with required/additionalProperties/
 * propertyNames/min- and maxProperties, anyOf, and the `oneOf` of `required`/`not` branches that states
 * "exactly one of these groups of fields". Anything else throws, so the fuzz never silently under-generates a
 * keyword added to the document later.
 */

export type JsonSchema = Record<string, unknown>;
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface ArbitraryOptions {
  /** Resolves `#/components/schemas/NAME`. */
  resolveRef: (ref: string) => JsonSchema;
  /** Values to prefer for a property of this name (existing bundles, ids), mixed with generated ones. */
  propertyHints?: Readonly<Record<string, readonly Json[]>>;
}

const HANDLED = new Set([
  'type',
  'description',
  'example',
  'examples',
  'default',
  'enum',
  'const',
  'pattern',
  'minLength',
  'maxLength',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'items',
  'minItems',
  'maxItems',
  'properties',
  'required',
  'additionalProperties',
  'propertyNames',
  'minProperties',
  'maxProperties',
  'anyOf',
  'oneOf',
  '$ref',
]);

export function arbitraryFor(schema: JsonSchema, options: ArbitraryOptions): fc.Arbitrary<Json> {
  for (const key of Object.keys(schema)) {
    if (!HANDLED.has(key)) throw new Error(`schema-arbitrary: keyword "${key}" is not handled`);
  }
  if (typeof schema.$ref === 'string') return arbitraryFor(options.resolveRef(schema.$ref), options);
  if ('const' in schema) return fc.constant(schema.const as Json);
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as Json[]));
  if (Array.isArray(schema.anyOf)) {
    // A branch alone, with the surrounding keywords (a description, a default) that apply to all of them.
    return fc.oneof(...(schema.anyOf as JsonSchema[]).map((branch) => arbitraryFor(branch, options)));
  }
  const types = [schema.type].flat();
  if (types.length > 1) {
    return fc.oneof(...types.map((type) => arbitraryFor({ ...schema, type }, options)));
  }
  switch (types[0]) {
    case 'string':
      return stringArbitrary(schema);
    case 'integer':
    case 'number':
      return numberArbitrary(schema, types[0] === 'integer');
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const items = arbitraryFor((schema.items as JsonSchema | undefined) ?? {}, options);
      const minLength = (schema.minItems as number | undefined) ?? 0;
      return fc.array(items, {
        minLength,
        maxLength: Math.min((schema.maxItems as number) ?? 4, minLength + 4),
      });
    }
    case 'object':
      return objectArbitrary(schema, options);
    case undefined:
      return fc.jsonValue() as fc.Arbitrary<Json>;
    default:
      throw new Error(`schema-arbitrary: type ${String(types[0])} is not handled`);
  }
}

function stringArbitrary(schema: JsonSchema): fc.Arbitrary<Json> {
  const minLength = (schema.minLength as number | undefined) ?? 0;
  // Lengths stay small (a 64 KiB argv entry says nothing a 40-character one does not), within the bounds.
  const maxLength = Math.min((schema.maxLength as number | undefined) ?? 40, Math.max(minLength, 40));
  const fits = (value: string) => value.length >= minLength && value.length <= maxLength;
  if (typeof schema.pattern === 'string') {
    return fc.stringMatching(new RegExp(schema.pattern)).filter(fits);
  }
  if (schema.format === 'binary') return fc.string({ maxLength });
  return fc.string({ minLength, maxLength, unit: 'binary' });
}

function numberArbitrary(schema: JsonSchema, integer: boolean): fc.Arbitrary<Json> {
  const exclusiveMin = schema.exclusiveMinimum as number | undefined;
  const min = (schema.minimum as number | undefined) ?? exclusiveMin ?? -(2 ** 31);
  const max = (schema.maximum as number | undefined) ?? 2 ** 31;
  if (integer) {
    const low = BigInt(Math.ceil(exclusiveMin !== undefined ? exclusiveMin + 1 : min));
    const high = BigInt(Math.floor(max));
    // The bounds themselves are where off-by-one refusals hide: they come up often.
    return fc.oneof(fc.constantFrom(low, high), fc.bigInt({ min: low, max: high })).map(Number);
  }
  return fc
    .double({ min, max, noNaN: true, noDefaultInfinity: true })
    .filter((value) => (exclusiveMin === undefined || value > exclusiveMin) && !Object.is(value, -0));
}

/** A branch of an "exactly one of" `oneOf`: the fields it requires and the fields it forbids. */
interface FieldGroup {
  required: string[];
  forbidden: string[];
}

function fieldGroups(oneOf: JsonSchema[]): FieldGroup[] {
  const groups = oneOf.map((branch) => {
    for (const key of Object.keys(branch)) {
      if (key !== 'required' && key !== 'not')
        throw new Error(`schema-arbitrary: oneOf branch keyword "${key}"`);
    }
    const not = branch.not as { anyOf?: Array<{ required: string[] }> } | undefined;
    return {
      required: (branch.required as string[] | undefined) ?? [],
      forbidden: (not?.anyOf ?? []).flatMap((entry) => entry.required),
    };
  });
  // Exactly one branch may match: the fields the other branches require stay out too.
  return groups.map((group) => ({
    required: group.required,
    forbidden: [
      ...group.forbidden,
      ...groups
        .flatMap((other) => (other === group ? [] : other.required))
        .filter((field) => !group.required.includes(field)),
    ],
  }));
}

function objectArbitrary(schema: JsonSchema, options: ArbitraryOptions): fc.Arbitrary<Json> {
  const properties = (schema.properties as Record<string, JsonSchema> | undefined) ?? {};
  const required = new Set((schema.required as string[] | undefined) ?? []);
  const minProperties = (schema.minProperties as number | undefined) ?? 0;
  const propertyArbitrary = (name: string, propertySchema: JsonSchema): fc.Arbitrary<Json> => {
    const generated = arbitraryFor(propertySchema, options);
    const hints = options.propertyHints?.[name];
    return hints && hints.length > 0 ? fc.oneof(fc.constantFrom(...hints), generated) : generated;
  };

  if (Object.keys(properties).length === 0 && typeof schema.additionalProperties === 'object') {
    // A record (labels): keys from propertyNames, values from additionalProperties.
    const key = arbitraryFor((schema.propertyNames as JsonSchema | undefined) ?? { type: 'string' }, options);
    const value = arbitraryFor(schema.additionalProperties as JsonSchema, options);
    const maxKeys = Math.min((schema.maxProperties as number | undefined) ?? 4, 4);
    return fc
      .dictionary(key as fc.Arbitrary<string>, value, {
        maxKeys,
        minKeys: minProperties,
        noNullPrototype: true,
      })
      .map((record) => record as Json);
  }
  if (schema.additionalProperties !== false && schema.additionalProperties !== undefined) {
    throw new Error(
      'schema-arbitrary: objects with both properties and additionalProperties are not handled',
    );
  }

  const groups = Array.isArray(schema.oneOf)
    ? fieldGroups(schema.oneOf as JsonSchema[])
    : [{ required: [], forbidden: [] }];
  const names = Object.keys(properties);
  return fc.integer({ min: 0, max: groups.length - 1 }).chain((index) => {
    const group = groups[index]!;
    const mandatory = new Set([...required, ...group.required]);
    const allowed = names.filter((name) => !group.forbidden.includes(name));
    const record: Record<string, fc.Arbitrary<Json>> = {};
    for (const name of allowed) record[name] = propertyArbitrary(name, properties[name]!);
    return fc
      .record(record, { requiredKeys: allowed.filter((name) => mandatory.has(name)) })
      .filter((value) => Object.keys(value).length >= minProperties)
      .map((value) => value as Json);
  });
}
