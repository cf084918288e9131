import { randomBytes } from 'node:crypto';
import type { MonitoringConfig } from '../config.js';
import { KubeClient, KubeError } from '../kube/client.js';
import type { RunOutcome } from './outcome.js';

/**
 * A Kubernetes Event (events.k8s.io/v1) about a run's outcome, posted on the claim it read or
 * wrote, so `kubectl describe pvc` and `kubectl get events` show it. Events expire (an hour by
 * default): they are a signal, not a history.
 */

export const REPORTING_CONTROLLER = 'pvc-backup.io/runner';

/** The Event reasons of the contract; a successful verify posts none. */
export type EventReason = 'BackupSucceeded' | 'BackupFailed' | 'VerifyFailed' | 'RestoreSucceeded' | 'RestoreFailed';

export function eventReason(outcome: RunOutcome): EventReason | undefined {
  const failed = outcome.status === 'failed';
  if (outcome.status === 'skipped') return undefined;
  switch (outcome.command) {
    case 'backup':
      return failed ? 'BackupFailed' : 'BackupSucceeded';
    case 'verify':
      return failed ? 'VerifyFailed' : undefined;
    case 'restore':
      return failed ? 'RestoreFailed' : 'RestoreSucceeded';
  }
}

/** The API limits an Event's note to 1 kB. */
const NOTE_MAX_BYTES = 1024;

export interface EventTarget {
  claimName: string;
  namespace: string;
  /** Names the reporting instance (the pod's host name). */
  hostname: string;
}

/** The Event object for an outcome, or undefined when the outcome posts none. */
export function eventFor(outcome: RunOutcome, target: EventTarget): Record<string, unknown> | undefined {
  const reason = eventReason(outcome);
  if (!reason) return undefined;
  const action = { backup: 'Backup', verify: 'Verify', restore: 'Restore' }[outcome.command];
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: eventName(target.claimName, outcome.finishedAt), namespace: target.namespace },
    eventTime: microTime(outcome.finishedAt),
    reportingController: REPORTING_CONTROLLER,
    reportingInstance: `${REPORTING_CONTROLLER}-${target.hostname}`.slice(0, 128),
    action,
    reason,
    type: outcome.status === 'failed' ? 'Warning' : 'Normal',
    regarding: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: target.claimName, namespace: target.namespace },
    note: truncateBytes(`[${outcome.prefix}] ${outcome.message}`, NOTE_MAX_BYTES),
  };
}

/** `<claim>.<hex time><hex random>`, the shape kubectl's own Event names have; at most 253 characters. */
function eventName(claim: string, time: Date): string {
  const suffix = `${(BigInt(time.getTime()) * 1_000_000n).toString(16)}${randomBytes(3).toString('hex')}`;
  return `${claim.slice(0, 253 - suffix.length - 1)}.${suffix}`;
}

/** MicroTime: RFC 3339 with six fractional digits. */
function microTime(time: Date): string {
  return time.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function truncateBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let cut = text;
  while (Buffer.byteLength(cut) > max - 3) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/** Posts the outcome's Event; resolves false when the outcome posts none. Throws KubeError. */
export async function postEvent(
  events: NonNullable<MonitoringConfig['events']>,
  outcome: RunOutcome,
  hostname: string,
  deadline: number,
  timeoutSeconds: number,
): Promise<boolean> {
  const event = eventFor(outcome, { claimName: events.claimName, namespace: events.namespace, hostname });
  if (!event) return false;
  if (!events.apiUrl) throw new KubeError('no Kubernetes API address: KUBERNETES_SERVICE_HOST is not set (not in a pod?); pass --kube-api');
  const client = new KubeClient({ apiUrl: events.apiUrl, credentialsDir: events.credentialsDir, timeoutSeconds });
  await client.request('POST', `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(events.namespace)}/events`, event, { deadline });
  return true;
}
