import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { helmBinaries, runHelm } from '../helpers/helm.js';
import { CHART_PATH, helmTemplate, parseManifests, resourceIds } from './rendered-chart.js';

/**
 * values.schema.json is enforced by Helm itself on install, upgrade, lint and template. Helm 3
 * (gojsonschema) and Helm 4 (santhosh-tekuri/jsonschema) word errors differently, so a rejection
 * is recognised by a failed render that mentions the schema and names the offending key.
 */

const claim = { claimName: 'shop-data' };

interface BadCase {
  name: string;
  values: unknown;
  /** The key the error must name. */
  key: string;
}

const BAD_VALUES: BadCase[] = [
  { name: 'missing source.claimName', values: {}, key: 'claimName' },
  { name: 'empty source.claimName', values: { source: { claimName: '' } }, key: 'claimName' },
  { name: 'unknown top-level key', values: { source: claim, schedule: '0 1 * * *' }, key: 'schedule' },
  { name: 'unknown nested key (a typo)', values: { source: claim, backup: { keeplast: 3 } }, key: 'keeplast' },
  { name: 'a quoted number', values: { source: claim, backup: { keepLast: '3' } }, key: 'keepLast' },
  { name: 'a string for a boolean', values: { source: claim, backup: { suspend: 'yes' } }, key: 'suspend' },
  { name: 'a string for an object', values: { source: claim, nodeSelector: 'linux' }, key: 'nodeSelector' },
  { name: 'an object for a list', values: { source: claim, tolerations: { key: 'x' } }, key: 'tolerations' },
  { name: 'backup.keepLast below 1', values: { source: claim, backup: { keepLast: 0 } }, key: 'keepLast' },
  { name: 'backup.keep.last below 1', values: { source: claim, backup: { keep: { last: 0 } } }, key: 'last' },
  { name: 'a negative backup.keep tier', values: { source: claim, backup: { keep: { daily: -1 } } }, key: 'daily' },
  { name: 'a quoted backup.keep tier', values: { source: claim, backup: { keep: { weekly: '4' } } }, key: 'weekly' },
  { name: 'a fractional backup.keep tier', values: { source: claim, backup: { keep: { monthly: 1.5 } } }, key: 'monthly' },
  { name: 'an unknown backup.keep tier', values: { source: claim, backup: { keep: { biweekly: 2 } } }, key: 'biweekly' },
  { name: 'unknown compression', values: { source: claim, backup: { compression: 'xz' } }, key: 'compression' },
  { name: 'unknown restore mode', values: { source: claim, restore: { mode: 'overwrite' } }, key: 'mode' },
  { name: 'unknown concurrency policy', values: { source: claim, backup: { concurrencyPolicy: 'Never' } }, key: 'concurrencyPolicy' },
  { name: 'unknown pull policy', values: { source: claim, image: { pullPolicy: 'Sometimes' } }, key: 'pullPolicy' },
  { name: 'gzip level above 9', values: { source: claim, backup: { compression: 'gzip', level: 12 } }, key: 'level' },
  { name: 'a level without compression', values: { source: claim, backup: { compression: 'none', level: 3 } }, key: 'level' },
  { name: 'a starting deadline under 10 s', values: { source: claim, backup: { startingDeadlineSeconds: 5 } }, key: 'startingDeadlineSeconds' },
  { name: 'storage.create=false without existingClaim', values: { source: claim, storage: { create: false } }, key: 'existingClaim' },
  { name: 'a prefix the runner refuses', values: { source: claim, backup: { prefix: 'daily/db' } }, key: 'prefix' },
  { name: 'an exclude pattern that looks like a flag', values: { source: claim, backup: { exclude: ['--all'] } }, key: 'exclude' },
  { name: 'a restore archive outside the backup directory', values: { source: claim, restore: { archive: '../etc/passwd' } }, key: 'archive' },
  { name: 'a grace period the runner cannot parse', values: { source: claim, verify: { grace: '1 hour' } }, key: 'grace' },
  { name: 'a storage size that is no quantity', values: { source: claim, storage: { size: 'big' } }, key: 'size' },
];

describe.each(helmBinaries())('values schema on Helm $major', (helm) => {
  it.each(BAD_VALUES)('rejects $name', ({ values, key }) => {
    const result = helmTemplate(helm, values);
    expect(result.code, result.stdout).not.toBe(0);
    expect(result.stderr).toMatch(/schema/i);
    expect(result.stderr).toContain(key);
  });

  it('accepts the install command of the README, --set values included', () => {
    const result = runHelm(helm, ['template', 'shop', CHART_PATH, '--set', 'source.claimName=data', '--set', 'backup.schedule=0 */6 * * *']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('schedule: "0 */6 * * *"');
  });

  it('accepts nulls for optional values and an empty storage class', () => {
    const result = helmTemplate(helm, {
      source: claim,
      backup: { level: null, startingDeadlineSeconds: null, activeDeadlineSeconds: null },
      storage: { storageClassName: '' },
      restore: { targetSubPath: null },
    });
    expect(result.code, result.stderr).toBe(0);
  });

  it('accepts globals and an enabled flag, so the chart works as a subchart', () => {
    const result = helmTemplate(helm, { source: claim, enabled: true, global: { imageRegistry: 'mirror.example.com' } });
    expect(result.code, result.stderr).toBe(0);
  });
});

describe('as a dependency of another chart', () => {
  const parent = mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-parent-'));
  afterAll(() => rmSync(parent, { recursive: true, force: true }));
  cpSync(CHART_PATH, path.join(parent, 'charts', 'pvc-backup'), { recursive: true });
  writeFileSync(
    path.join(parent, 'Chart.yaml'),
    stringify({
      apiVersion: 'v2',
      name: 'shop',
      version: '1.0.0',
      dependencies: [{ name: 'pvc-backup', version: '0.1.0', condition: 'pvc-backup.enabled' }],
    }),
  );
  writeFileSync(path.join(parent, 'values.yaml'), stringify({ global: { environment: 'prod' }, 'pvc-backup': { enabled: true, source: claim } }));

  it.each(helmBinaries())('renders under Helm $major with globals and a dependency condition', (helm) => {
    const result = runHelm(helm, ['template', 'shop', parent]);
    expect(result.code, result.stderr).toBe(0);
    expect(resourceIds(parseManifests(result.stdout))).toEqual([
      'CronJob/shop-pvc-backup',
      'CronJob/shop-pvc-backup-verify',
      'PersistentVolumeClaim/shop-pvc-backup',
      'Role/shop-pvc-backup',
      'RoleBinding/shop-pvc-backup',
      'ServiceAccount/shop-pvc-backup',
    ]);
  });
});
