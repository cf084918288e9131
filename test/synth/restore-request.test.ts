import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { helmBinaries, runHelm } from '../helpers/helm.js';
import { CHART_PATH, fullname, IMAGE_REPOSITORY, parseManifests, renderChart, REQUIRED_VALUES, runnerContainerOf, type Manifest, type ValuesOverride } from './rendered-chart.js';

/**
 * One restore Job per distinct request: its name is `F-restore-<8 hex>`, the hex being a hash of
 * the request that is also passed to the runner as --request-id.
 */

const F = fullname();
const base: ValuesOverride = { ...REQUIRED_VALUES, restore: { enabled: true } };
const isRestoreJob = (m: Manifest) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`);

function restoreJobName(values: ValuesOverride, helm = helmBinaries()[0]!): string {
  const jobs = renderChart(helm, values).filter(isRestoreJob);
  expect(jobs).toHaveLength(1);
  return jobs[0]!.metadata.name;
}

function withRestore(restore: NonNullable<ValuesOverride['restore']>, rest: ValuesOverride = {}): ValuesOverride {
  return { ...base, ...rest, restore: { ...base.restore, ...restore } };
}

describe('restore Job name', () => {
  let name = '';
  beforeAll(() => {
    name = restoreJobName(base);
  });

  it('is the fullname, -restore- and 8 hex characters', () => {
    expect(name).toMatch(new RegExp(`^${F}-restore-[0-9a-f]{8}$`));
  });

  it('is the same for identical renders, on Helm 3 and Helm 4', () => {
    for (const helm of helmBinaries()) {
      expect(restoreJobName(base, helm)).toBe(name);
      expect(restoreJobName(base, helm)).toBe(name);
    }
  });

  it('ends in the request id the runner gets', () => {
    const job = renderChart(helmBinaries()[0]!, base).find(isRestoreJob)!;
    const args: string[] = runnerContainerOf(job).args;
    expect(`${F}-restore-${args[args.indexOf('--request-id') + 1]}`).toBe(name);
  });

  it.each([
    ['archive', withRestore({ archive: 'shop-20240601T000000Z.tar.gz' })],
    ['mode', withRestore({ mode: 'merge' })],
    ['target claim', withRestore({ targetClaim: 'shop-data-copy' })],
    ['target directory', withRestore({ targetSubPath: 'uploads' })],
    ['nonce (to repeat a restore on purpose)', withRestore({ nonce: '2024-06-02' })],
    ['archive prefix', withRestore({}, { backup: { prefix: 'nightly' } })],
    ['selected paths', withRestore({ paths: ['./etc/app.conf'] })],
    ['source: the bucket (restore.from=offsite)', withRestore({ from: 'offsite' }, { offsite: { enabled: true, url: 's3://backups/shop' } })],
  ])('changes with the %s', (_what, values) => {
    expect(restoreJobName(values)).not.toBe(name);
  });

  it.each([
    ['image tag', withRestore({}, { image: { repository: IMAGE_REPOSITORY, tag: '9.9.9' } })],
    ['resources', withRestore({}, { resources: { requests: { cpu: '1' } } })],
    ['snapshot and backoff settings', withRestore({ snapshot: false, backoffLimit: 5 })],
    ['backup schedule', withRestore({}, { backup: { schedule: '0 3 * * *' } })],
    ['off-site copies (still restoring from the volume)', withRestore({}, { offsite: { enabled: true, url: 's3://backups/shop' } })],
    ['restore.from, written as the default local', withRestore({ from: 'local' })],
    ['encryption', withRestore({}, { encryption: { existingSecret: 'shop-age' } })],
  ])('stays the same when only the %s changes (an upgrade must not restore again)', (_what, values) => {
    expect(restoreJobName(values)).toBe(name);
  });
});

describe('restore Job on upgrade', () => {
  it('re-emits the live Job spec when the Job already exists (Helm lookup, simulated)', () => {
    // lookup is empty under helm template; substitute a live Job to exercise the upgrade branch.
    const chart = mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-lookup-'));
    try {
      cpSync(CHART_PATH, chart, { recursive: true });
      const file = path.join(chart, 'templates', 'restore-job.yaml');
      const template = readFileSync(file, 'utf8');
      const lookup = /lookup "batch\/v1" "Job" \(include "pvc-backup\.namespace" \.\) \([^)]*\)/;
      expect(template).toMatch(lookup);
      const liveSpec = {
        backoffLimit: 1,
        selector: { matchLabels: { 'batch.kubernetes.io/controller-uid': '1234' } },
        template: {
          metadata: { labels: { 'batch.kubernetes.io/controller-uid': '1234', 'job-name': 'x' } },
          spec: { containers: [{ name: 'restore', image: 'ghcr.io/pvc-backup/pvc-backup:0.1.0', args: ['restore'] }], restartPolicy: 'Never' },
        },
      };
      writeFileSync(file, template.replace(lookup, `fromJson ${JSON.stringify(JSON.stringify({ spec: liveSpec }))}`));
      for (const helm of helmBinaries()) {
        const result = runHelm(helm, ['template', 'shop', chart, '--set', 'source.claimName=shop-data', '--set', `image.repository=${IMAGE_REPOSITORY}`, '--set', 'restore.enabled=true', '--set', 'image.tag=2.0.0']);
        expect(result.code, result.stderr).toBe(0);
        const job = parseManifests(result.stdout).find(isRestoreJob)!;
        expect(job.spec).toEqual(liveSpec);
        expect(job.metadata.labels).toMatchObject({ 'app.kubernetes.io/component': 'restore' });
      }
    } finally {
      rmSync(chart, { recursive: true, force: true });
    }
  });

  it('never sets ttlSecondsAfterFinished (Helm would recreate a Job its TTL deleted)', () => {
    const job = renderChart(helmBinaries()[0]!, base).find(isRestoreJob)!;
    expect(job.spec).not.toHaveProperty('ttlSecondsAfterFinished');
  });
});
