import { z } from 'zod';
import { parseSignal, type Signal } from '../signals.js';

/** runc itself accepts `^[\w+-\.]+$`; we are stricter so an id can never look like a flag or a path. */
export const CONTAINER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const ContainerId = z
  .string()
  .regex(
    CONTAINER_ID_PATTERN,
    'container id must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit',
  )
  .describe('Container id, as runc knows it')
  .meta({ example: 'mycontainer' });

export const ContainerIdParams = z.object({ id: ContainerId });

export const SignalParam = z
  .union([z.string(), z.number()])
  .transform((value, ctx): Signal => {
    const parsed = parseSignal(value);
    if (parsed.ok) return parsed.signal;
    ctx.addIssue({ code: 'custom', message: parsed.reason });
    return z.NEVER;
  })
  .describe('Signal name (SIGTERM, TERM) or number (1-31)');

/** Query-string booleans as curl users write them: `true`, `false`, `1`, `0`. */
export const QueryBoolean = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe('Stable machine-readable error code'),
    containerId: z.string().optional(),
  })
  .describe('RFC 9457 problem details')
  .meta({ id: 'Problem' });
