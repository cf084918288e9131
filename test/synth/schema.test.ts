import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { helmBinaries, runHelm } from '../helpers/helm.js';
import { CHART_PATH, helmTemplate, IMAGE_REPOSITORY, parseManifests, REQUIRED_VALUES, resourceIds } from './rendered-chart.js';

/**
 * values.schema.json is enforced by Helm itself on install, upgrade, lint and template. Helm 3
 * (gojsonschema) and Helm 4 (santhosh-tekuri/jsonschema) word errors differently, so a rejection
 * is recognised by a failed render that mentions the schema and names the offending key.
 */

const claim = REQUIRED_VALUES.source;
const image = REQUIRED_VALUES.image;

interface BadCase {
  name: string;
  values: unknown;
  /** The key the error must name. */
  key: string;
}

const BAD_VALUES: BadCase[] = [
  { name: 'missing source.claimName', values: { image }, key: 'claimName' },
  { name: 'empty source.claimName', values: { image, source: { claimName: '' } }, key: 'claimName' },
  { name: 'unknown top-level key', values: { ...REQUIRED_VALUES, schedule: '0 1 * * *' }, key: 'schedule' },
  { name: 'unknown nested key (a typo)', values: { ...REQUIRED_VALUES, backup: { keeplast: 3 } }, key: 'keeplast' },
  { name: 'a quoted number', values: { ...REQUIRED_VALUES, backup: { keepLast: '3' } }, key: 'keepLast' },
  { name: 'a string for a boolean', values: { ...REQUIRED_VALUES, backup: { suspend: 'yes' } }, key: 'suspend' },
  { name: 'a string for an object', values: { ...REQUIRED_VALUES, nodeSelector: 'linux' }, key: 'nodeSelector' },
  { name: 'an object for a list', values: { ...REQUIRED_VALUES, tolerations: { key: 'x' } }, key: 'tolerations' },
  { name: 'backup.keepLast below 1', values: { ...REQUIRED_VALUES, backup: { keepLast: 0 } }, key: 'keepLast' },
  { name: 'backup.keep.last below 1', values: { ...REQUIRED_VALUES, backup: { keep: { last: 0 } } }, key: 'last' },
  { name: 'a negative backup.keep tier', values: { ...REQUIRED_VALUES, backup: { keep: { daily: -1 } } }, key: 'daily' },
  { name: 'a quoted backup.keep tier', values: { ...REQUIRED_VALUES, backup: { keep: { weekly: '4' } } }, key: 'weekly' },
  { name: 'a fractional backup.keep tier', values: { ...REQUIRED_VALUES, backup: { keep: { monthly: 1.5 } } }, key: 'monthly' },
  { name: 'an unknown backup.keep tier', values: { ...REQUIRED_VALUES, backup: { keep: { biweekly: 2 } } }, key: 'biweekly' },
  { name: 'unknown compression', values: { ...REQUIRED_VALUES, backup: { compression: 'xz' } }, key: 'compression' },
  { name: 'unknown restore mode', values: { ...REQUIRED_VALUES, restore: { mode: 'overwrite' } }, key: 'mode' },
  { name: 'unknown concurrency policy', values: { ...REQUIRED_VALUES, backup: { concurrencyPolicy: 'Never' } }, key: 'concurrencyPolicy' },
  { name: 'unknown pull policy', values: { ...REQUIRED_VALUES, image: { ...image, pullPolicy: 'Sometimes' } }, key: 'pullPolicy' },
  { name: 'gzip level above 9', values: { ...REQUIRED_VALUES, backup: { compression: 'gzip', level: 12 } }, key: 'level' },
  { name: 'a level without compression', values: { ...REQUIRED_VALUES, backup: { compression: 'none', level: 3 } }, key: 'level' },
  { name: 'a starting deadline under 10 s', values: { ...REQUIRED_VALUES, backup: { startingDeadlineSeconds: 5 } }, key: 'startingDeadlineSeconds' },
  { name: 'storage.create=false without existingClaim', values: { ...REQUIRED_VALUES, storage: { create: false } }, key: 'existingClaim' },
  { name: 'a prefix the runner refuses', values: { ...REQUIRED_VALUES, backup: { prefix: 'daily/db' } }, key: 'prefix' },
  { name: 'an exclude pattern that looks like a flag', values: { ...REQUIRED_VALUES, backup: { exclude: ['--all'] } }, key: 'exclude' },
  { name: 'a restore archive outside the backup directory', values: { ...REQUIRED_VALUES, restore: { archive: '../etc/passwd' } }, key: 'archive' },
  { name: 'a grace period the runner cannot parse', values: { ...REQUIRED_VALUES, verify: { grace: '1 hour' } }, key: 'grace' },
  { name: 'a storage size that is no quantity', values: { ...REQUIRED_VALUES, storage: { size: 'big' } }, key: 'size' },
  // the image
  { name: 'a missing image.repository, saying how to build and push one', values: { source: claim }, key: 'docker push REGISTRY/pvc-backup:0.1.0' },
  { name: 'an image.repository with a tag in it', values: { source: claim, image: { repository: 'registry.example.com/pvc-backup:1.0' } }, key: 'repository' },
  { name: 'a global.imageRegistry with a space', values: { ...REQUIRED_VALUES, global: { imageRegistry: 'my registry' } }, key: 'imageRegistry' },
  { name: 'an image pull secret without a name', values: { ...REQUIRED_VALUES, imagePullSecrets: [{ nam: 'login' }] }, key: 'imagePullSecrets' },
  { name: 'a global image pull secret that is a number', values: { ...REQUIRED_VALUES, global: { imagePullSecrets: [42] } }, key: 'imagePullSecrets' },
  // Pod Security
  { name: 'an unknown security profile', values: { ...REQUIRED_VALUES, securityProfile: 'strict' }, key: 'securityProfile' },
  { name: 'uid 0 for the restricted profile', values: { ...REQUIRED_VALUES, nonRoot: { runAsUser: 0 } }, key: 'runAsUser' },
  { name: 'a capability in lower case', values: { ...REQUIRED_VALUES, backup: { addCapabilities: ['dac_override'] } }, key: 'addCapabilities' },
  { name: 'a typo inside securityContext', values: { ...REQUIRED_VALUES, securityContext: { readOnlyRootFileSystem: true } }, key: 'readOnlyRootFileSystem' },
  { name: 'a typo inside podSecurityContext', values: { ...REQUIRED_VALUES, podSecurityContext: { runAsUSer: 1000 } }, key: 'runAsUSer' },
  { name: 'an unknown seccomp profile type', values: { ...REQUIRED_VALUES, podSecurityContext: { seccompProfile: { type: 'Default' } } }, key: 'type' },
  // typed Kubernetes objects
  { name: 'a typo inside resources', values: { ...REQUIRED_VALUES, resources: { request: { cpu: '1' } } }, key: 'request' },
  { name: 'a quantity that is no quantity', values: { ...REQUIRED_VALUES, resources: { limits: { memory: '1 GB' } } }, key: 'memory' },
  { name: 'a typo inside a component\'s resources', values: { ...REQUIRED_VALUES, backup: { resources: { limit: { memory: '1Gi' } } } }, key: 'resources' },
  { name: 'a typo inside affinity', values: { ...REQUIRED_VALUES, affinity: { nodeAfinity: {} } }, key: 'nodeAfinity' },
  { name: 'a pod affinity term without topologyKey', values: { ...REQUIRED_VALUES, affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: {} }] } } }, key: 'topologyKey' },
  { name: 'an unknown toleration operator', values: { ...REQUIRED_VALUES, tolerations: [{ key: 'a', operator: 'Is' }] }, key: 'operator' },
  { name: 'a typo inside a component\'s affinity', values: { ...REQUIRED_VALUES, verify: { affinity: { podAntiAfinity: {} } } }, key: 'affinity' },
  { name: 'a component nodeSelector that is a list', values: { ...REQUIRED_VALUES, restore: { nodeSelector: ['linux'] } }, key: 'nodeSelector' },
  // conventions
  { name: 'a namespaceOverride that is no namespace name', values: { ...REQUIRED_VALUES, namespaceOverride: 'Backups_1' }, key: 'namespaceOverride' },
  { name: 'a common label that is a number', values: { ...REQUIRED_VALUES, commonLabels: { tier: 1 } }, key: 'commonLabels' },
  { name: 'a negative termination grace period', values: { ...REQUIRED_VALUES, terminationGracePeriodSeconds: -1 }, key: 'terminationGracePeriodSeconds' },
  { name: 'an extra volume named like the chart\'s own', values: { ...REQUIRED_VALUES, extraVolumes: [{ name: 'backup', emptyDir: {} }] }, key: 'extraVolumes' },
  { name: 'an extra mount over /backup', values: { ...REQUIRED_VALUES, extraVolumeMounts: [{ name: 'x', mountPath: '/backup' }] }, key: 'mountPath' },
  { name: 'a typo inside extraEnvFrom', values: { ...REQUIRED_VALUES, extraEnvFrom: [{ configMap: { name: 'x' } }] }, key: 'configMap' },
  { name: 'an extraEnv entry with a typo', values: { ...REQUIRED_VALUES, extraEnv: [{ name: 'A', valu: 'b' }] }, key: 'valu' },
  { name: 'a bind Job deadline of 0', values: { ...REQUIRED_VALUES, storage: { bindJob: { activeDeadlineSeconds: 0 } } }, key: 'activeDeadlineSeconds' },
  { name: 'tests.enabled as a string', values: { ...REQUIRED_VALUES, tests: { enabled: 'yes' } }, key: 'enabled' },
  { name: 'storage.bindJob.enabled as a string', values: { ...REQUIRED_VALUES, storage: { bindJob: { enabled: 'no' } } }, key: 'enabled' },
  { name: 'a common annotation that is a list', values: { ...REQUIRED_VALUES, commonAnnotations: { team: ['a'] } }, key: 'commonAnnotations' },
  { name: 'a global.storageClass that is a number', values: { ...REQUIRED_VALUES, global: { storageClass: 3 } }, key: 'storageClass' },
  { name: 'gid 0 for the restricted profile', values: { ...REQUIRED_VALUES, nonRoot: { runAsGroup: 0 } }, key: 'runAsGroup' },
  { name: 'a priorityClassName that is a number', values: { ...REQUIRED_VALUES, priorityClassName: 1000 }, key: 'priorityClassName' },
  { name: 'a runtimeClassName that is a boolean', values: { ...REQUIRED_VALUES, runtimeClassName: true }, key: 'runtimeClassName' },
  { name: 'a component toleration with a typo', values: { ...REQUIRED_VALUES, backup: { tolerations: [{ key: 'a', efect: 'NoSchedule' }] } }, key: 'tolerations' },
];

describe.each(helmBinaries())('values schema on Helm $major', (helm) => {
  it.each(BAD_VALUES)('rejects $name', ({ values, key }) => {
    const result = helmTemplate(helm, values);
    expect(result.code, result.stdout).not.toBe(0);
    expect(result.stderr).toMatch(/schema/i);
    expect(result.stderr).toContain(key);
  });

  it('accepts the install command of the README, --set values included', () => {
    const result = runHelm(helm, ['template', 'shop', CHART_PATH, '--set', 'source.claimName=data', '--set', `image.repository=${IMAGE_REPOSITORY}`, '--set', 'backup.schedule=0 */6 * * *']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('schedule: "0 */6 * * *"');
  });

  it('accepts nulls for optional values and an empty storage class', () => {
    const result = helmTemplate(helm, {
      ...REQUIRED_VALUES,
      backup: { level: null, startingDeadlineSeconds: null, activeDeadlineSeconds: null, addCapabilities: null, resources: null, affinity: null },
      storage: { storageClassName: '' },
      restore: { targetSubPath: null },
    });
    expect(result.code, result.stderr).toBe(0);
  });

  it('accepts globals and an enabled flag, so the chart works as a subchart', () => {
    const result = helmTemplate(helm, { ...REQUIRED_VALUES, enabled: true, global: { imageRegistry: 'mirror.example.com', anythingElse: { from: 'a parent' } } });
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
  writeFileSync(path.join(parent, 'values.yaml'), stringify({ global: { environment: 'prod', storageClass: 'parent-class' }, 'pvc-backup': { enabled: true, ...REQUIRED_VALUES, tests: { enabled: false } } }));

  it.each(helmBinaries())('renders under Helm $major with globals and a dependency condition', (helm) => {
    const result = runHelm(helm, ['template', 'shop', parent]);
    expect(result.code, result.stderr).toBe(0);
    const manifests = parseManifests(result.stdout);
    expect(resourceIds(manifests).map((id) => id.replace(/-[0-9a-f]{8}$/, '-<hash>'))).toEqual([
      'CronJob/shop-pvc-backup',
      'CronJob/shop-pvc-backup-verify',
      'Job/shop-pvc-backup-bind-<hash>',
      'PersistentVolumeClaim/shop-pvc-backup',
      'Role/shop-pvc-backup',
      'RoleBinding/shop-pvc-backup',
      'ServiceAccount/shop-pvc-backup',
    ]);
    // The parent's global.storageClass reaches the backup claim.
    expect(manifests.find((m) => m.kind === 'PersistentVolumeClaim')!.spec.storageClassName).toBe('parent-class');
  });
});
