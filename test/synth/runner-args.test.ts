import { beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine, type BackupConfig, type ListConfig, type RestoreConfig, type RunnerConfig, type VerifyConfig } from '../../runner/config.js';
import { helmBinaries } from '../helpers/helm.js';
import { AWS_VALUES, MINIO_BUCKET_ONLY_VALUES, matrix } from './offsite-sets.js';
import { OVERRIDE_SETS } from './override-sets.js';
import { environmentOf, find, fullname, podTemplateOf, renderChart, runnerContainerOf, workloadsOf, type Manifest } from './rendered-chart.js';

/**
 * The chart calls the runner with explicit flags. These tests feed the rendered args and env of
 * every pod to the runner's own parser, so a change on either side that breaks the other fails here.
 */

const F = fullname();

function parseRunnerArgs(workload: Manifest): RunnerConfig {
  const container = runnerContainerOf(workload);
  const parsed = parseCommandLine(container.args, environmentOf(container), { checkPaths: false });
  if (parsed.kind !== 'run') throw new Error(`the runner reads ${JSON.stringify(container.args)} as ${parsed.kind}, not a command to run`);
  return parsed.config;
}

/** The flag's path must be where the pod mounts the named volume, with the expected access. */
function expectMounted(workload: Manifest, path: string, volume: string, readOnly: boolean): void {
  const mount = runnerContainerOf(workload).volumeMounts.find((m: { name: string }) => m.name === volume);
  expect(mount, `${workload.metadata.name} mounts ${volume}`).toBeDefined();
  expect(mount.mountPath).toBe(path);
  expect(mount.readOnly ?? false).toBe(readOnly);
}

/** The off-site and encryption values (every layout × restore.from × encryption that renders), beside the override sets. */
const OFFSITE_SETS = [
  ...matrix()
    .filter((c) => !c.fails)
    .map((c) => ({ name: `offsite: ${c.layout}, restore.from ${c.from ?? 'default'}, encryption ${c.encryption}`, values: c.values })),
  { name: 'offsite: AWS 3-2-1', values: AWS_VALUES },
  { name: 'offsite: MinIO bucket only', values: MINIO_BUCKET_ONLY_VALUES },
];

describe.each(helmBinaries())('runner args of the off-site and encryption values, rendered by Helm $major', (helm) => {
  it.each(OFFSITE_SETS.map((s) => s.name))('every container of "%s" runs a command line the runner accepts', (name) => {
    const manifests = renderChart(helm, OFFSITE_SETS.find((s) => s.name === name)!.values);
    for (const workload of workloadsOf(manifests)) {
      const spec = podTemplateOf(workload).spec;
      for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
        const parsed = parseCommandLine(container.args, environmentOf(container), { checkPaths: false });
        expect(parsed.kind, `${workload.metadata.name}/${container.name}: ${JSON.stringify(container.args)}`).toBe('run');
      }
    }
  });
});

describe.each(helmBinaries())('runner args rendered by Helm $major', (helm) => {
  const rendered = new Map<string, Manifest[]>();
  beforeAll(() => {
    for (const set of OVERRIDE_SETS) rendered.set(set.name, renderChart(helm, set.values));
  });

  it.each(OVERRIDE_SETS.map((s) => s.name))('every pod of "%s" runs a command line the runner accepts', (name) => {
    for (const workload of workloadsOf(rendered.get(name)!)) {
      const config = parseRunnerArgs(workload);
      expect(config.logFormat).toBe('json');
      if (config.command === 'backup') {
        if (config.source === undefined) expect(runnerContainerOf(workload).volumeMounts.map((m: { name: string }) => m.name)).not.toContain('source');
        else expectMounted(workload, config.source, 'source', true);
        if (config.dumps) expectMounted(workload, config.dumps.dir, 'dumps', true);
        if (config.dest !== undefined) expectMounted(workload, config.dest, 'backup', false);
      } else if (config.command === 'verify') {
        if (config.dest !== undefined) expectMounted(workload, config.dest, 'backup', false);
      } else if (config.command === 'list') {
        // The bind Job: the backup claim, and the source read-only, like a backup pod.
        if (config.dest !== undefined) expectMounted(workload, config.dest, 'backup', false);
        if (name !== 'dumps only, no source claim') expectMounted(workload, '/data', 'source', true);
      } else if (config.command === 'restore') {
        expectMounted(workload, config.target, 'target', false);
        if (config.dest !== undefined) expectMounted(workload, config.dest, 'backup', false);
      } else {
        throw new Error(`unexpected runner command ${config.command}`);
      }
    }
  });

  it('backup gets the default settings as flags', () => {
    const config = parseRunnerArgs(find(rendered.get('defaults plus a claim name and an image')!, 'CronJob', F)) as BackupConfig;
    expect(config).toMatchObject({ command: 'backup', source: '/data', dest: '/backup', prefix: 'shop', compression: 'gzip', retention: { last: 10 }, excludes: [], allowEmpty: false, skipUnreadable: false });
  });

  it('backup gets every tuned setting as flags', () => {
    const config = parseRunnerArgs(find(rendered.get('schedule, time zone and backup tuning')!, 'CronJob', F)) as BackupConfig;
    expect(config).toMatchObject({
      prefix: 'nightly',
      compression: 'zstd',
      level: 19,
      retention: { last: 30 },
      excludes: ['cache/**', '*.tmp', '-weird name'],
      allowEmpty: true,
      skipUnreadable: true,
    });
  });

  it('backup gets the retention tiers as flags; backup.keep.last wins over backup.keepLast', () => {
    const tiers = parseRunnerArgs(find(rendered.get('retention tiers')!, 'CronJob', F)) as BackupConfig;
    expect(tiers.retention).toEqual({ last: 5, hourly: 0, daily: 7, weekly: 4, monthly: 12, yearly: 3 });
    const defaults = parseRunnerArgs(find(rendered.get('defaults plus a claim name and an image')!, 'CronJob', F)) as BackupConfig;
    expect(defaults.retention).toEqual({ last: 10 });
    const tuned = parseRunnerArgs(find(rendered.get('schedule, time zone and backup tuning')!, 'CronJob', F)) as BackupConfig;
    expect(tuned.retention).toEqual({ last: 30 });
  });

  it('verify checks every archive and, while backups are scheduled, their freshness', () => {
    const tuned = parseRunnerArgs(find(rendered.get('schedule, time zone and backup tuning')!, 'CronJob', `${F}-verify`)) as VerifyConfig;
    expect(tuned).toMatchObject({ command: 'verify', dest: '/backup', prefix: 'nightly', selection: { kind: 'all' } });
    expect(tuned.freshness).toEqual({ schedule: '0 */6 * * *', timeZone: 'Europe/Berlin', graceSeconds: 5400 });

    const suspended = parseRunnerArgs(find(rendered.get('verify scheduled, backups suspended')!, 'CronJob', `${F}-verify`)) as VerifyConfig;
    expect(suspended.selection).toEqual({ kind: 'all' });
    expect(suspended.freshness).toBeUndefined();
  });

  it('the bind Job lists the archives of the prefix; helm test verifies the newest', () => {
    const manifests = rendered.get('schedule, time zone and backup tuning')!;
    const bind = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-bind-`))!;
    expect(parseRunnerArgs(bind) as ListConfig).toMatchObject({ command: 'list', dest: '/backup', prefix: 'nightly' });
    const test = parseRunnerArgs(find(manifests, 'Pod', `${F}-test`)) as VerifyConfig;
    expect(test).toMatchObject({ command: 'verify', dest: '/backup', prefix: 'nightly', selection: { kind: 'latest' } });
    expect(test.freshness).toBeUndefined();
  });

  it('restore gets the request, its id and its switches as flags', () => {
    const manifests = rendered.get('restore enabled')!;
    const job = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!;
    const config = parseRunnerArgs(job) as RestoreConfig;
    expect(config).toMatchObject({
      command: 'restore',
      dest: '/backup',
      target: '/data',
      prefix: 'shop',
      archive: 'shop-20240601T000000Z.tar.gz',
      mode: 'merge',
      snapshot: false,
      allowUnverified: true,
      dryRun: false,
    });
    expect(job.metadata.name).toBe(`${F}-restore-${config.requestId}`);
  });

  it('restore defaults to the latest archive, replace mode and a snapshot first', () => {
    const job = rendered.get('colocation with the application pod')!.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!;
    const config = parseRunnerArgs(job) as RestoreConfig;
    expect(config).toMatchObject({ archive: 'latest', mode: 'replace', snapshot: true, allowUnverified: false });
    expect(podTemplateOf(job).spec.volumes.find((v: { name: string }) => v.name === 'target').persistentVolumeClaim.claimName).toBe('shop-data');
  });

  it('restore.paths: one --path per item, merged in whatever restore.mode says', () => {
    const values = { ...OVERRIDE_SETS.find((s) => s.name === 'colocation with the application pod')!.values };
    values.restore = { ...values.restore, enabled: true, mode: 'replace', paths: ['./etc/app.conf', 'data/db/', 'name with spaces'] };
    for (const helm of helmBinaries()) {
      const job = renderChart(helm, values).find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!;
      const config = parseRunnerArgs(job) as RestoreConfig;
      expect(config.mode).toBe('merge');
      expect(config.paths?.paths).toEqual(['data/db', 'etc/app.conf', 'name with spaces']);
      expect(job.metadata.annotations?.['pvc-backup.io/restore-paths']).toBe('./etc/app.conf\ndata/db/\nname with spaces');
    }
  });

  it('extra environment reaches the runner', () => {
    const backup = find(rendered.get('resources, scheduling and pod settings')!, 'CronJob', F);
    expect(parseRunnerArgs(backup).progressSeconds).toBe(30);
  });
});
