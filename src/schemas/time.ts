import { z } from 'zod';

/**
 * A point in time as callers write it: RFC 3339 (`2026-11-28T10:30:00Z`) or unix seconds (`1795910000`, as
 * `docker events --since` sends), normalized to an ISO string so it compares with stored times.
 */
export const TimeParam = z.string().transform((value, ctx) => {
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
});
