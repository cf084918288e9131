import { describe, expect, it } from 'vitest';
import { type MonitoringConfig, parseCommandLine } from '../../runner/config.js';
import { UsageError } from '../../runner/errors.js';
import { judgeFreshness, nextDueRun } from '../../runner/freshness.js';
import { eventFor } from '../../runner/monitoring/events.js';
import { gauges, groupUrl, renderExposition } from '../../runner/monitoring/metrics.js';
import { parseNotifyTarget } from '../../runner/monitoring/notify.js';
import type { RunOutcome } from '../../runner/monitoring/outcome.js';
import { pingUrl } from '../../runner/monitoring/ping.js';
import { parseExposition } from '../helpers/servers.js';

/** The monitoring parts that are pure functions: formats, URLs, the next-due rule, and flag parsing. */

const outcome: RunOutcome = {
  command: 'backup',
  status: 'failed',
  exitCode: 1,
  message: 'no space left on device (/backup)',
  prefix: 'shop',
  startedAt: new Date('2024-06-01T00:00:05Z'),
  finishedAt: new Date('2024-06-01T00:01:05.250Z'),
};

describe('notification targets', () => {
  it.each([
    ['https://hooks.slack.com/services/T0/B0/xyz', 'slack', 'https://hooks.slack.com/services/T0/B0/xyz'],
    ['https://ntfy.sh/my-backups', 'ntfy', 'https://ntfy.sh/my-backups'],
    ['ntfy+https://ntfy.example.com/backups', 'ntfy', 'https://ntfy.example.com/backups'],
    ['slack+https://chat.example.com/hooks/abc', 'slack', 'https://chat.example.com/hooks/abc'],
    ['json+https://hooks.slack.com/x', 'json', 'https://hooks.slack.com/x'],
    ['https://example.com/webhook?key=1', 'json', 'https://example.com/webhook?key=1'],
  ])('%s is sent in the %s format to %s', (text, format, url) => {
    const target = parseNotifyTarget(text, '--notify-url');
    expect(target.format).toBe(format);
    expect(target.url.href).toBe(url);
  });

  it('refuses what it cannot send, without repeating the URL', () => {
    expect(() => parseNotifyTarget('not a url with a s3cret', '--notify-url (number 2)')).toThrow(
      new UsageError('--notify-url (number 2) is not a URL (its value is not shown: it may hold a credential)'),
    );
  });
});

describe('the Pushgateway group', () => {
  it('is job/namespace/prefix/command under the base URL, keeping its path', () => {
    expect(groupUrl(new URL('http://gw.monitoring:9091/'), { namespace: 'apps', prefix: 'shop', command: 'backup' }).href).toBe(
      'http://gw.monitoring:9091/metrics/job/pvc-backup/namespace/apps/prefix/shop/command/backup',
    );
    expect(groupUrl(new URL('https://u:p@example.com/pushgateway?x=1'), { namespace: undefined, prefix: 'a.b_c-1', command: 'verify' }).href).toBe(
      'https://u:p@example.com/pushgateway/metrics/job/pvc-backup/prefix/a.b_c-1/command/verify',
    );
  });

  it('base64-encodes a value that could not stand in a path segment', () => {
    const url = groupUrl(new URL('http://gw:9091'), { namespace: 'apps', prefix: 'a/b', command: 'backup' });
    expect(url.pathname).toBe(`/metrics/job/pvc-backup/namespace/apps/prefix@base64/${Buffer.from('a/b').toString('base64url')}/command/backup`);
  });

  it('carries no size metrics and no last-success time for a failure', () => {
    const text = renderExposition(gauges({ ...outcome, sourceBytes: 10, files: 2 }, { archives: 4, nextDue: new Date() }));
    const samples = parseExposition(text);
    expect(samples.map((s) => [s.name, s.value])).toEqual([
      ['pvc_backup_last_run_timestamp_seconds', 1717200065.25],
      ['pvc_backup_last_run_success', 0],
      ['pvc_backup_last_duration_seconds', 60.25],
      ['pvc_backup_archives', 4],
    ]);
    expect(text).toContain('# TYPE pvc_backup_last_run_success gauge\n');
  });
});

describe('the next-due time', () => {
  // A deterministic spread of times over a year, off the minute, so no case sits on a boundary.
  const times = Array.from({ length: 400 }, (_, i) => new Date(Date.UTC(2024, 0, 1) + ((i * 7_919_993_917) % 31_536_000_000) + 17_123));

  it.each([
    ['0 0 * * *', 'Etc/UTC', 3600],
    ['0 */6 * * *', 'Europe/Berlin', 1800],
    ['30 2 * * 1-5', 'America/New_York', 7200],
    ['15 3 1 * *', 'Etc/UTC', 86400],
  ])('says exactly when the verify freshness check starts failing (%s, %s, grace %is)', (schedule, timeZone, graceSeconds) => {
    for (const newest of times) {
      const due = nextDueRun({ schedule, timeZone }, newest);
      expect(due.getTime()).toBeGreaterThan(newest.getTime());
      for (const offset of [-1, 1]) {
        // Just before and just after `due + grace`.
        const now = new Date(due.getTime() + graceSeconds * 1000 + offset * 1000);
        const { fresh } = judgeFreshness({ schedule, timeZone, graceSeconds }, newest, now);
        expect(fresh, `newest ${newest.toISOString()} at ${now.toISOString()}`).toBe(offset < 0);
      }
    }
  });
});

describe('the Event', () => {
  it('keeps its note within the API limit of 1 kB, cutting on a character boundary', () => {
    const long = { ...outcome, message: 'ü'.repeat(2000) };
    const event = eventFor(long, { claimName: 'data', namespace: 'apps', hostname: 'h' })!;
    const note = event.note as string;
    expect(Buffer.byteLength(note)).toBeLessThanOrEqual(1024);
    expect(note.endsWith('ü…')).toBe(true);
  });

  it('is not posted for a verify that passed or a restore that had nothing to do', () => {
    const target = { claimName: 'data', namespace: 'apps', hostname: 'h' };
    expect(eventFor({ ...outcome, command: 'verify', status: 'succeeded' }, target)).toBeUndefined();
    expect(eventFor({ ...outcome, command: 'restore', status: 'skipped' }, target)).toBeUndefined();
  });
});

describe('ping URLs', () => {
  it('put the suffix on the path, before the query', () => {
    const base = new URL('https://hc-ping.com/5a1b/?create=1');
    expect(pingUrl(base, 'start').href).toBe('https://hc-ping.com/5a1b/start?create=1');
    expect(pingUrl(base, 'success').href).toBe('https://hc-ping.com/5a1b?create=1');
    expect(pingUrl(base, 'fail').href).toBe('https://hc-ping.com/5a1b/fail?create=1');
  });
});

describe('monitoring flags', () => {
  const parse = (args: string[], env: Record<string, string> = {}): MonitoringConfig | undefined => {
    const parsed = parseCommandLine(args, env, { checkPaths: false });
    if (parsed.kind !== 'run') throw new Error('not a run');
    return parsed.monitoring;
  };

  it('are off unless something is configured, and for list, prune and dry runs', () => {
    expect(parse(['backup', '--source', '/s', '--dest', '/d'])).toBeUndefined();
    expect(parse(['list', '--dest', '/d'])).toBeUndefined();
    expect(parse(['restore', '--dest', '/d', '--target', '/t', '--dry-run', '--ping-url', 'https://hc/x'])).toBeUndefined();
  });

  it('read every setting from the environment too, and the API address from the pod', () => {
    const config = parse(['backup', '--source', '/s', '--dest', '/d', '--schedule', '0 3 * * *'], {
      PVC_BACKUP_PUSHGATEWAY_URL: 'http://gw:9091',
      PVC_BACKUP_NOTIFY_URL: 'https://hooks.slack.com/a\nhttps://example.com/b',
      PVC_BACKUP_NOTIFY_ON: 'always',
      PVC_BACKUP_EVENTS: 'true',
      PVC_BACKUP_CLAIM_NAME: 'data',
      PVC_BACKUP_NAMESPACE: 'apps',
      PVC_BACKUP_MONITORING_TIMEOUT: '3s',
      KUBERNETES_SERVICE_HOST: 'fd00::1',
      KUBERNETES_SERVICE_PORT: '443',
    })!;
    expect(config.pushgatewayUrl?.href).toBe('http://gw:9091/');
    expect(config.notify.map((t) => t.format)).toEqual(['slack', 'json']);
    expect(config.notifyOn).toBe('always');
    expect(config.events).toEqual({ claimName: 'data', namespace: 'apps', apiUrl: 'https://[fd00::1]:443', credentialsDir: '/var/run/secrets/kubernetes.io/serviceaccount' });
    expect(config.schedule).toEqual({ schedule: '0 3 * * *', timeZone: 'Etc/UTC' });
    expect(config.timeoutSeconds).toBe(3);
  });

  it.each([
    [['--pushgateway-url', 'gw:9091'], '--pushgateway-url must be an http:// or https:// URL, got a gw: URL'],
    [['--ping-url', 'hc-ping.com/x'], '--ping-url is not a URL (its value is not shown: it may hold a credential)'],
    [['--notify-url', 'https://x', '--notify-on', 'sometimes'], '--notify-on must be failure or always, got "sometimes"'],
    [['--events', '--claim-name', 'Data_1', '--namespace', 'apps'], '--claim-name must be a PersistentVolumeClaim name, got "Data_1"'],
    [['--ping-url', 'https://hc/x', '--monitoring-timeout', '10m'], '--monitoring-timeout must be between 100ms and 2m'],
    [['--pushgateway-url', 'http://gw', '--schedule', '61 * * * *'], '--schedule "61 * * * *" with --time-zone Etc/UTC is not a valid cron schedule'],
  ])('refuse %j', (flags, message) => {
    expect(() => parse(['backup', '--source', '/s', '--dest', '/d', ...flags])).toThrow(message);
  });
});
