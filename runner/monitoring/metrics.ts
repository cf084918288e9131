import { type HttpResponse, sendWithRetries } from '../http.js';
import type { RunOutcome } from './outcome.js';

/**
 * Prometheus metrics of one run, pushed to a Pushgateway. One group per job="pvc-backup",
 * namespace, prefix and command: never per pod or run, so pushed series (which never expire)
 * do not pile up, and a backup's push does not erase the verify job's series.
 *
 * A success is pushed with PUT (the group becomes exactly this run); a failure with POST, which
 * replaces only the metrics it carries, so the last success's timestamp, sizes and next-due
 * time stay as they were.
 */

export const PUSH_JOB = 'pvc-backup';

export interface MetricsExtras {
  /** Archives of the prefix in the backup directory after the run. */
  archives?: number;
  /** backup: when the schedule next expects one (freshness.ts nextDueRun). */
  nextDue?: Date;
}

interface Gauge {
  name: string;
  help: string;
  value: number | undefined;
}

/** The gauges of one outcome; those without a value are left out. */
export function gauges(outcome: RunOutcome, extras: MetricsExtras): Gauge[] {
  const success = outcome.status === 'succeeded';
  const seconds = (d: Date) => d.getTime() / 1000;
  const all: Gauge[] = [
    { name: 'pvc_backup_last_run_timestamp_seconds', help: 'When the last run finished (Unix time).', value: seconds(outcome.finishedAt) },
    { name: 'pvc_backup_last_run_success', help: '1 if the last run succeeded, 0 if it failed.', value: success ? 1 : 0 },
    { name: 'pvc_backup_last_success_timestamp_seconds', help: 'When the last successful run finished (Unix time).', value: success ? seconds(outcome.finishedAt) : undefined },
    { name: 'pvc_backup_last_duration_seconds', help: 'How long the last run took.', value: (outcome.finishedAt.getTime() - outcome.startedAt.getTime()) / 1000 },
    { name: 'pvc_backup_last_source_bytes', help: 'Uncompressed bytes of the last successful backup (read) or restore (written).', value: success ? outcome.sourceBytes : undefined },
    { name: 'pvc_backup_last_archive_bytes', help: 'Archive size of the last successful backup or restore.', value: success ? outcome.archiveBytes : undefined },
    { name: 'pvc_backup_last_files', help: 'Regular files in the last successful backup or restore.', value: success ? outcome.files : undefined },
    { name: 'pvc_backup_archives', help: 'Archives of the prefix kept in the backup directory after the last run.', value: extras.archives },
    {
      name: 'pvc_backup_next_due_timestamp_seconds',
      help: 'When the schedule expects the next backup (Unix time): its first run after the last successful one.',
      value: success && extras.nextDue ? seconds(extras.nextDue) : undefined,
    },
  ];
  return all.filter((g) => g.value !== undefined && Number.isFinite(g.value));
}

/** The Prometheus text exposition format (version 0.0.4). */
export function renderExposition(list: Gauge[]): string {
  return list.map((g) => `# HELP ${g.name} ${g.help}\n# TYPE ${g.name} gauge\n${g.name} ${g.value}\n`).join('');
}

/**
 * The group's URL: `<base>/metrics/job/pvc-backup/namespace/<ns>/prefix/<prefix>/command/<command>`.
 * Values that could not stand in a path segment go base64-encoded (`label@base64/…`), as the
 * Pushgateway defines; a missing namespace leaves the label out.
 */
export function groupUrl(base: URL, labels: { namespace: string | undefined; prefix: string; command: string }): URL {
  const url = new URL(base.href);
  const segments: [string, string][] = [['job', PUSH_JOB]];
  if (labels.namespace) segments.push(['namespace', labels.namespace]);
  segments.push(['prefix', labels.prefix], ['command', labels.command]);
  const path = segments
    .map(([name, value]) => (/^[A-Za-z0-9._-]+$/.test(value) ? `${name}/${value}` : `${name}@base64/${Buffer.from(value).toString('base64url') || '='}`))
    .join('/');
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/metrics/${path}`;
  url.search = '';
  url.hash = '';
  return url;
}

export function pushMetrics(url: URL, outcome: RunOutcome, extras: MetricsExtras, deadline: number): Promise<HttpResponse> {
  return sendWithRetries(
    {
      url,
      method: outcome.status === 'succeeded' ? 'PUT' : 'POST',
      headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' },
      body: renderExposition(gauges(outcome, extras)),
      deadline,
    },
    { attempts: 3 },
  );
}
