import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, runCli } from '../helpers/cli.js';
import { type Pushgateway, type Sample, closedPort, startPushgateway } from '../helpers/servers.js';
import { useTempDirs, writeTree } from '../helpers/tree.js';

/**
 * Metrics against the real Prometheus Pushgateway (Debian prometheus-pushgateway): the runner
 * pushes after every backup, verify and restore; the test scrapes the gateway's /metrics and
 * checks names, labels and values, that a second run replaces its group instead of adding
 * series, that a failure keeps the last success, and that a dead gateway costs only a warning.
 */

const available = fs.existsSync('/usr/bin/prometheus-pushgateway') ? undefined : 'needs prometheus-pushgateway (scripts/setup.sh installs it)';
if (available) console.warn(`skipping test/monitoring/pushgateway.test.ts: ${available}`);

const GROUP = { job: 'pvc-backup', namespace: 'apps', prefix: 'shop', instance: '' };
const BACKUP_METRICS = [
  'pvc_backup_archives',
  'pvc_backup_last_archive_bytes',
  'pvc_backup_last_duration_seconds',
  'pvc_backup_last_files',
  'pvc_backup_last_run_success',
  'pvc_backup_last_run_timestamp_seconds',
  'pvc_backup_last_source_bytes',
  'pvc_backup_last_success_timestamp_seconds',
  'pvc_backup_next_due_timestamp_seconds',
];

function of(samples: Sample[], command: string): Map<string, Sample> {
  const mine = samples.filter((s) => s.labels.command === command);
  for (const s of mine) expect(s.labels, s.name).toEqual({ ...GROUP, command });
  return new Map(mine.map((s) => [s.name, s]));
}

function value(samples: Map<string, Sample>, name: string): number {
  const sample = samples.get(name);
  if (!sample) throw new Error(`no ${name} among ${[...samples.keys()].join(', ')}`);
  return sample.value;
}

describe.skipIf(available !== undefined)('metrics pushed to a real Pushgateway', () => {
  const tempDir = useTempDirs('file');
  let gateway: Pushgateway;
  let source: string;
  let dest: string;
  const flags = () => ['--dest', dest, '--prefix', 'shop', '--pushgateway-url', gateway.url, '--namespace', 'apps', '--log-format', 'json'];

  beforeAll(async () => {
    gateway = await startPushgateway();
    source = await tempDir('metrics-source');
    dest = await tempDir('metrics-dest');
    writeTree(source, { 'a.txt': 'alpha\n', 'sub/b.txt': 'bravo bravo\n', 'sub/c.bin': Buffer.alloc(4096, 7) });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  let first: Map<string, Sample>;
  let firstSummary: Record<string, unknown>;

  it('pushes every metric of a backup, grouped by job, namespace, prefix and command', async () => {
    const startedAt = Date.now();
    const run = await runCli(['backup', '--source', source, ...flags(), '--schedule', '0 0 * * *']);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const lines = jsonLines(run.stdout);
    firstSummary = lines.find((l) => l.event === 'backup.done')!;
    expect(lines.find((l) => l.event === 'monitoring.sent')?.msg).toBe('reported backup succeeded: metrics');

    first = of(await gateway.scrape(), 'backup');
    expect([...first.keys()].sort()).toEqual(BACKUP_METRICS);
    expect(value(first, 'pvc_backup_last_run_success')).toBe(1);
    expect(value(first, 'pvc_backup_last_source_bytes')).toBe(firstSummary.bytesIn);
    expect(value(first, 'pvc_backup_last_archive_bytes')).toBe(firstSummary.bytesOut);
    expect(value(first, 'pvc_backup_last_archive_bytes')).toBe(fs.statSync(path.join(dest, firstSummary.archive as string)).size);
    expect(value(first, 'pvc_backup_last_files')).toBe(3);
    expect(value(first, 'pvc_backup_archives')).toBe(1);
    const finished = value(first, 'pvc_backup_last_run_timestamp_seconds') * 1000;
    expect(finished).toBeGreaterThanOrEqual(startedAt);
    expect(finished).toBeLessThanOrEqual(Date.now());
    expect(value(first, 'pvc_backup_last_success_timestamp_seconds')).toBe(value(first, 'pvc_backup_last_run_timestamp_seconds'));
    expect(value(first, 'pvc_backup_last_duration_seconds')).toBeGreaterThan(0);
    // "0 0 * * *": the first UTC midnight after the run's start (one minute of clock skew allowed).
    const after = new Date(startedAt + 60_000);
    expect(value(first, 'pvc_backup_next_due_timestamp_seconds')).toBe(Date.UTC(after.getUTCFullYear(), after.getUTCMonth(), after.getUTCDate() + 1) / 1000);
  });

  it('replaces the group on the next backup instead of adding series', async () => {
    writeTree(source, { 'd.txt': 'delta\n' });
    const run = await runCli(['backup', '--source', source, ...flags(), '--schedule', '0 0 * * *']);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const samples = await gateway.scrape();
    expect(samples.filter((s) => s.name === 'pvc_backup_last_run_success')).toHaveLength(1);
    const second = of(samples, 'backup');
    expect([...second.keys()].sort()).toEqual(BACKUP_METRICS);
    expect(value(second, 'pvc_backup_archives')).toBe(2);
    expect(value(second, 'pvc_backup_last_files')).toBe(4);
    expect(value(second, 'pvc_backup_last_run_timestamp_seconds')).toBeGreaterThan(value(first, 'pvc_backup_last_run_timestamp_seconds'));
    first = second;
  });

  it('keeps the last success, its sizes and next-due time when a backup fails', async () => {
    const empty = await tempDir('metrics-empty');
    const run = await runCli(['backup', '--source', empty, ...flags(), '--schedule', '0 0 * * *']);
    expect(run.code).toBe(1);
    const failed = of(await gateway.scrape(), 'backup');
    expect(value(failed, 'pvc_backup_last_run_success')).toBe(0);
    expect(value(failed, 'pvc_backup_last_run_timestamp_seconds')).toBeGreaterThan(value(first, 'pvc_backup_last_run_timestamp_seconds'));
    for (const kept of ['pvc_backup_last_success_timestamp_seconds', 'pvc_backup_last_source_bytes', 'pvc_backup_last_files', 'pvc_backup_next_due_timestamp_seconds']) {
      expect(value(failed, kept), kept).toBe(value(first, kept));
    }
    expect(value(failed, 'pvc_backup_archives')).toBe(2);
  });

  it('reports a refused command line (a source that is not mounted) as a failed backup', async () => {
    const run = await runCli(['backup', '--source', path.join(source, 'not-mounted'), ...flags()]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('does not exist');
    const refused = of(await gateway.scrape(), 'backup');
    expect(value(refused, 'pvc_backup_last_run_success')).toBe(0);
    expect(value(refused, 'pvc_backup_last_success_timestamp_seconds')).toBe(value(first, 'pvc_backup_last_success_timestamp_seconds'));
  });

  it('pushes verify and restore runs into groups of their own, leaving the backup series alone', async () => {
    const before = of(await gateway.scrape(), 'backup');
    const verify = await runCli(['verify', ...flags(), '--all']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const target = await tempDir('metrics-target');
    const restore = await runCli(['restore', ...flags(), '--archive', 'latest', '--target', target, '--no-snapshot']);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);

    const samples = await gateway.scrape();
    expect(of(samples, 'backup')).toEqual(before);
    const verified = of(samples, 'verify');
    expect(value(verified, 'pvc_backup_last_run_success')).toBe(1);
    expect(value(verified, 'pvc_backup_archives')).toBe(2);
    expect(verified.has('pvc_backup_next_due_timestamp_seconds')).toBe(false);
    const restored = of(samples, 'restore');
    expect(value(restored, 'pvc_backup_last_run_success')).toBe(1);
    expect(value(restored, 'pvc_backup_last_files')).toBe(4);
    const restoreSummary = jsonLines(restore.stdout).find((l) => l.event === 'restore.done')!;
    expect(value(restored, 'pvc_backup_last_source_bytes')).toBe(restoreSummary.bytes);
    expect(value(restored, 'pvc_backup_last_archive_bytes')).toBe(restoreSummary.archiveBytes);
  });

  it('treats a dead Pushgateway as a warning: the backup still succeeds, within the timeout', async () => {
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const run = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', '--pushgateway-url', dead, '--monitoring-timeout', '2s', '--log-format', 'json']);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const lines = jsonLines(run.stdout);
    const warning = lines.find((l) => l.event === 'monitoring.failed');
    expect(warning?.msg).toMatch(/^could not send the metrics to http:\/\/127\.0\.0\.1:\d+: connection refused; the run's own result is unaffected$/);
    const done = Date.parse(lines.find((l) => l.event === 'backup.done')!.time);
    expect(Date.parse(warning!.time) - done).toBeLessThan(2_500);
  });
});
