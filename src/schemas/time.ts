import { z } from 'zod';

/**
 * A point in time as callers write it: RFC 3339 (`2026-11-28T10:30:00Z`) or unix seconds (`1795910000`, as
 * `docker events --since` sends), normalized to an ISO string so it compares with stored times.
 */
const RFC3339 =
  '[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])';
const UNIX_SECONDS = '[0-9]{1,12}(?:\\.[0-9]{1,9})?';

/**
 * The OpenAPI document states the two forms exactly; the parser is more forgiving (any date `Date` reads), so
 * every value the document allows is accepted.
 */
export const TIME_PATTERN = `^(?:${RFC3339}|${UNIX_SECONDS})$`;

export const TimeParam = z
  .string()
  .transform((value, ctx) => {
    const trimmed = value.trim();
    const date = /^\d+(\.\d+)?$/.test(trimmed) ? new Date(Number(trimmed) * 1000) : new Date(trimmed);
    if (trimmed === '' || Number.isNaN(date.getTime())) {
      ctx.addIssue({
        code: 'custom',
        message: `${JSON.stringify(value)} is not a time: use RFC 3339 (2026-11-28T10:30:00Z) or unix seconds`,
      });
      return z.NEVER;
    }
    return date.toISOString();
  })
  .meta({ pattern: TIME_PATTERN, description: 'RFC 3339 (2026-11-28T10:30:00Z) or unix seconds' });
