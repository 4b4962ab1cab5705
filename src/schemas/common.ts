import { z } from 'zod';
import { parseSignal, SIGNAL_NAMES, type Signal } from '../signals.js';

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

/**
 * 0-2147483647 in decimal without leading zeros: runc refuses larger ids ("uids and gids must be in range
 * 0-2147483647"). Written as a pattern, not a refinement, so the OpenAPI document says exactly what is accepted.
 */
const ID_0_TO_INT32_MAX =
  '(?:0|[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])';

export const UserParam = z
  .string()
  .regex(
    new RegExp(`^${ID_0_TO_INT32_MAX}(?::${ID_0_TO_INT32_MAX})?$`),
    'user must be uid or uid:gid, numbers from 0 to 2147483647',
  );

export const ContainerIdParams = z.object({ id: ContainerId });

/**
 * What the OpenAPI document promises: the names and numbers parseSignal, the one parser, accepts. It also takes
 * lowercase names (`term`); patterns carry no flags, so the document states the uppercase ones only, and every
 * value it allows is accepted.
 */
const SIGNAL_DOCUMENT = {
  type: undefined,
  anyOf: [
    {
      type: 'string',
      pattern: `^(?:(?:SIG)?(?:${SIGNAL_NAMES.join('|')})|[1-9]|[12][0-9]|3[01])$`,
    },
    { type: 'integer', minimum: 1, maximum: 31 },
  ],
};

export const SignalParam = z
  .union([z.string(), z.number()])
  .transform((value, ctx): Signal => {
    const parsed = parseSignal(value);
    if (parsed.ok) return parsed.signal;
    ctx.addIssue({ code: 'custom', message: parsed.reason });
    return z.NEVER;
  })
  .meta(SIGNAL_DOCUMENT)
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
