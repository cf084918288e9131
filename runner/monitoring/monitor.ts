import type { MonitoringConfig } from '../config.js';
import { nextDueRun } from '../freshness.js';
import { endpointName } from '../http.js';
import type { Logger } from '../log.js';
import { listArchives } from '../store/catalog.js';
import { eventReason, postEvent } from './events.js';
import { type MetricsExtras, groupUrl, pushMetrics } from './metrics.js';
import { type NotifyContext, sendNotification } from './notify.js';
import type { RunOutcome } from './outcome.js';
import { pingKindOf, sendPing } from './ping.js';

/**
 * Sends a run's signals: the start ping when the run starts, then, once it is over, metrics, an
 * Event, notifications and the finishing ping, all in parallel. Nothing here can fail or slow the
 * run itself: every delivery has the same deadline (--monitoring-timeout from the moment the run
 * ends), retries within it, and a failure is one warning line.
 */

export interface RunIdentity {
  /** The backup directory, where the metrics count the prefix's archives. */
  dest: string | undefined;
  hostname: string;
  version: string;
}

interface Delivery {
  /** What was delivered, for the summary line (`metrics`, `Event BackupFailed`, …). */
  what: string;
  /** Where to, for the warning (`the metrics to http://pushgateway:9091`). */
  where: string;
  send: () => Promise<unknown>;
}

export class Monitor {
  private startPing: Promise<void> | undefined;
  private finishing: Promise<void> | undefined;

  constructor(
    private readonly config: MonitoringConfig | undefined,
    private readonly run: RunIdentity,
    private readonly log: Logger,
  ) {}

  /** Whether anything will be sent at all. */
  get active(): boolean {
    return this.config !== undefined;
  }

  /** Sends the start ping without waiting for it: the run goes on at once. */
  start(): void {
    const ping = this.config?.pingUrl;
    if (!ping || this.startPing) return;
    const deadline = Date.now() + this.config!.timeoutSeconds * 1000;
    this.startPing = sendPing(ping, 'start', undefined, deadline).then(
      () => undefined,
      (error: Error) => this.warn(`the start ping to ${endpointName(ping)}`, error),
    );
  }

  /**
   * Reports the outcome everywhere it should go; at most once per run (a later call gets the first
   * call's promise). Resolves within the timeout (or `budgetSeconds`, if shorter); never rejects.
   */
  finish(outcome: RunOutcome, options: { budgetSeconds?: number } = {}): Promise<void> {
    this.finishing ??= this.deliver(outcome, options.budgetSeconds);
    return this.finishing;
  }

  private async deliver(outcome: RunOutcome, budgetSeconds: number | undefined): Promise<void> {
    const config = this.config;
    if (!config) return;
    const seconds = Math.min(config.timeoutSeconds, budgetSeconds ?? Infinity);
    const deadline = Date.now() + seconds * 1000;
    const deliveries = await this.deliveries(config, outcome, deadline);
    const results = await Promise.allSettled(deliveries.map((d) => d.send()));
    const sent: string[] = [];
    results.forEach((result, i) => {
      const delivery = deliveries[i]!;
      if (result.status === 'fulfilled') sent.push(delivery.what);
      else this.warn(delivery.where, result.reason as Error);
    });
    if (sent.length > 0) {
      this.log.info('monitoring.sent', `reported ${outcome.command} ${outcome.status}: ${sent.join(', ')}`);
    }
  }

  private async deliveries(config: MonitoringConfig, outcome: RunOutcome, deadline: number): Promise<Delivery[]> {
    const list: Delivery[] = [];
    const reports = outcome.status !== 'skipped';
    if (config.pushgatewayUrl && reports) {
      const url = groupUrl(config.pushgatewayUrl, { namespace: config.namespace, prefix: outcome.prefix, command: outcome.command });
      const extras = await this.metricsExtras(config, outcome, deadline);
      list.push({ what: 'metrics', where: `the metrics to ${endpointName(url)}`, send: () => pushMetrics(url, outcome, extras, deadline) });
    }
    const reason = eventReason(outcome);
    if (config.events && reason) {
      const events = config.events;
      list.push({
        what: `Event ${reason}`,
        where: `the Event ${reason} on PersistentVolumeClaim ${events.namespace}/${events.claimName}`,
        send: () => postEvent(events, outcome, this.run.hostname, deadline, config.timeoutSeconds),
      });
    }
    const notify = outcome.status === 'failed' || (outcome.status === 'succeeded' && config.notifyOn === 'always');
    if (notify) {
      const context: NotifyContext = { namespace: config.namespace, claimName: config.claimName, hostname: this.run.hostname, version: this.run.version };
      for (const target of config.notify) {
        list.push({
          what: `${target.format} notification`,
          where: `the ${target.format} notification to ${endpointName(target.url)}`,
          send: () => sendNotification(target, outcome, context, deadline),
        });
      }
    }
    const ping = config.pingUrl;
    if (ping) {
      const kind = pingKindOf(outcome.status);
      list.push({
        what: `${kind} ping`,
        where: `the ${kind} ping to ${endpointName(ping)}`,
        send: async () => {
          // The finishing ping must not overtake the start ping; both are bounded by their deadlines.
          await this.startPing;
          await sendPing(ping, kind, outcome.message, deadline);
        },
      });
    }
    return list;
  }

  /** The archive count and next-due time; each left out when it cannot be had in time. */
  private async metricsExtras(config: MonitoringConfig, outcome: RunOutcome, deadline: number): Promise<MetricsExtras> {
    const extras: MetricsExtras = {};
    if (config.schedule && outcome.command === 'backup' && outcome.status === 'succeeded') {
      extras.nextDue = nextDueRun(config.schedule, outcome.startedAt);
    }
    const dest = this.run.dest;
    if (dest) {
      const count = listArchives(dest, outcome.prefix).then((archives) => archives.length, () => undefined);
      const late = new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()) / 2).unref());
      extras.archives = await Promise.race([count, late]);
    }
    return extras;
  }

  private warn(where: string, error: Error): void {
    this.log.warn('monitoring.failed', `could not send ${where}: ${error.message}; the run's own result is unaffected`, { error: error.message });
  }
}
