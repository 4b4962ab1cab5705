import { z } from 'zod';
import { ContainerId } from './common.js';
import { TimeParam } from './time.js';

export const EventType = z.enum([
  'create',
  'start',
  'exec',
  'kill',
  'stop',
  'die',
  'pause',
  'resume',
  'restart',
  'delete',
  'monitor-lost',
]);
export type EventType = z.infer<typeof EventType>;

export const ContainerEvent = z
  .object({
    seq: z.number().int().describe('Increasing sequence number; survives daemon restarts'),
    time: z.string().describe('RFC 3339 time of the event'),
    type: EventType,
    id: z.string().describe('Container id'),
    attributes: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]))
      .describe(
        'die: exitCode, oomKilled; kill: signal; exec: args, exitCode; restart: reason, restartCount; reconciled: true on an event a restarted runcd published for a transition it found or finished (an operation its predecessor was killed in)',
      ),
  })
  .meta({
    id: 'ContainerEvent',
    example: {
      seq: 42,
      time: '2026-11-28T10:30:05.123Z',
      type: 'die',
      id: 'mycontainer',
      attributes: { exitCode: 137, oomKilled: false },
    },
  });
export type ContainerEvent = z.infer<typeof ContainerEvent>;

export const EventsQuery = z.object({
  since: TimeParam.optional().describe('Replay stored events from this time (RFC 3339 or unix seconds)'),
  until: TimeParam.optional().describe(
    'Stop streaming at this time; in the past, the stream ends after the replay',
  ),
  id: z
    .union([ContainerId, z.array(ContainerId)])
    .optional()
    .describe('Only these containers; repeatable'),
  type: z
    .union([EventType, z.array(EventType)])
    .optional()
    .describe('Only these event types; repeatable'),
});
