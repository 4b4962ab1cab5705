import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ContainerService } from '../lifecycle/container-service.js';
import type { EventBus } from '../lifecycle/event-bus.js';
import type { Invocation, ProcessRunner } from '../runtime/process-runner.js';
import { ContainerStatus } from '../schemas/container.js';
import { EventType } from '../schemas/events.js';

/**
 * Prometheus metrics for one daemon (both listeners share them). A registry of its own rather than prom-client's
 * global one, so several daemons in one process (the tests) never mix their series. Counters start at zero for
 * every label value they can take, so a dashboard sees a flat line instead of a missing series.
 */

const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** runc's (and crun's) subcommands; anything else an invocation's argv starts with is reported as "other". */
const RUNTIME_COMMANDS = new Set([
  'create',
  'start',
  'state',
  'list',
  'exec',
  'kill',
  'delete',
  'pause',
  'resume',
  'ps',
  'events',
  'run',
  'update',
  'checkpoint',
  'restore',
  'spec',
  'features',
]);
const RESTART_REASONS = ['policy', 'caller'] as const;
/**
 * prom-client samples event-loop delay on a timer, every 10 ms by default: 100 wake-ups a second, measured as
 * most of an idle daemon's CPU (0.7 % of a core with nothing to do). Its timer is parked (first tick after ~24
 * days) and the gauges read from its histogram are dropped. Still reported, without any timer:
 * nodejs_eventloop_lag_seconds (one setImmediate per scrape) and the loop's utilization between scrapes.
 */
const EVENT_LOOP_MONITOR_PARKED_MS = 2 ** 31 - 1;
const EVENT_LOOP_HISTOGRAM_GAUGES = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'].map(
  (figure) => `nodejs_eventloop_lag_${figure}_seconds`,
);
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export interface MetricSources {
  runner: ProcessRunner;
  events: EventBus;
  containers: ContainerService;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly requestDuration: Histogram<'method' | 'route' | 'status'>;
  private readonly requestsInFlight: Gauge;
  private readonly runtimeDuration: Histogram<'program' | 'command' | 'outcome'>;
  private readonly eventsEmitted: Counter<'type'>;
  private readonly restartsPerformed: Counter<'reason'>;
  private unsubscribe: (() => void) | undefined;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({
      register: this.registry,
      prefix: 'runcd_',
      eventLoopMonitoringPrecision: EVENT_LOOP_MONITOR_PARKED_MS,
    });
    for (const name of EVENT_LOOP_HISTOGRAM_GAUGES) this.registry.removeSingleMetric(`runcd_${name}`);
    let utilizationSince = performance.eventLoopUtilization();
    new Gauge({
      name: 'runcd_nodejs_eventloop_utilization_ratio',
      help: 'Share of the time since the previous scrape the event loop spent running code rather than waiting',
      registers,
      collect() {
        const now = performance.eventLoopUtilization();
        this.set(performance.eventLoopUtilization(now, utilizationSince).utilization);
        utilizationSince = now;
      },
    });
    this.requestDuration = new Histogram({
      name: 'runcd_http_request_duration_seconds',
      help: 'HTTP requests by method, route (as registered, e.g. /containers/:id) and status code',
      labelNames: ['method', 'route', 'status'],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.requestsInFlight = new Gauge({
      name: 'runcd_http_requests_in_flight',
      help: 'HTTP requests being served now (streams included)',
      registers,
    });
    this.runtimeDuration = new Histogram({
      name: 'runcd_runtime_invocation_duration_seconds',
      help: 'Runtime (runc), conmon and helper process runs by program, command and outcome (success, failure, timeout); for exec, failure includes the process exiting non-zero',
      labelNames: ['program', 'command', 'outcome'],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.eventsEmitted = new Counter({
      name: 'runcd_events_emitted_total',
      help: 'Lifecycle events published (GET /events) since the daemon started, by type',
      labelNames: ['type'],
      registers,
    });
    this.restartsPerformed = new Counter({
      name: 'runcd_restarts_total',
      help: 'Container restarts performed since the daemon started: by restart policy or asked for by a caller',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({
      name: 'runcd_containers',
      help: 'Containers known to runcd, by status',
      labelNames: ['status'],
      registers,
      collect() {
        const counts = countByStatus(sources.containers);
        for (const status of ContainerStatus.options) this.set({ status }, counts[status]);
      },
    });
    for (const type of EventType.options) this.eventsEmitted.inc({ type }, 0);
    for (const reason of RESTART_REASONS) this.restartsPerformed.inc({ reason }, 0);

    sources.runner.onInvocation((invocation) => this.observeInvocation(invocation));
    this.unsubscribe = sources.events.subscribe((event) => {
      this.eventsEmitted.inc({ type: event.type });
      if (event.type === 'restart') {
        const reason = event.attributes.reason === 'policy' ? 'policy' : 'caller';
        this.restartsPerformed.inc({ reason });
      }
    });
  }

  requestStarted(): void {
    this.requestsInFlight.inc();
  }

  requestFinished(method: string, route: string | undefined, status: number, seconds: number): void {
    this.requestsInFlight.dec();
    this.requestDuration.observe(
      {
        method: HTTP_METHODS.has(method) ? method : 'other',
        // Unmatched URLs share one label value: a scan of random paths must not create a series per path.
        route: route ?? 'unmatched',
        status: String(status),
      },
      seconds,
    );
  }

  /** Counts since start, for GET /info. */
  async totals(): Promise<{ eventsEmitted: number; restarts: number }> {
    const sum = async (counter: Counter<string>) =>
      (await counter.get()).values.reduce((total, sample) => total + sample.value, 0);
    return { eventsEmitted: await sum(this.eventsEmitted), restarts: await sum(this.restartsPerformed) };
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private observeInvocation(invocation: Invocation): void {
    const outcome = invocation.timedOut ? 'timeout' : invocation.exitCode === 0 ? 'success' : 'failure';
    this.runtimeDuration.observe(
      { program: basename(invocation.binary), command: commandOf(invocation), outcome },
      invocation.durationMs / 1000,
    );
  }
}

export function countByStatus(containers: ContainerService): Record<ContainerStatus, number> {
  const counts = Object.fromEntries(ContainerStatus.options.map((status) => [status, 0])) as Record<
    ContainerStatus,
    number
  >;
  for (const container of containers.list()) counts[container.status]++;
  return counts;
}

/** The runtime subcommand (runc's global flags come first, all in `--flag=value` form); conmon only creates. */
function commandOf(invocation: Invocation): string {
  if (invocation.argv.includes('--version')) return 'version';
  if (basename(invocation.binary) === 'conmon') return 'create';
  const first = invocation.argv.find((arg) => !arg.startsWith('-'));
  return first !== undefined && RUNTIME_COMMANDS.has(first) ? first : 'other';
}
