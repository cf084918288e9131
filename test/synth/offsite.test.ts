import { beforeAll, describe, expect, it } from 'vitest';
import { helmBinaries, type HelmResult } from '../helpers/helm.js';
import { renderNotes, listPodOf, useNotesProbe } from './notes-probe.js';
import { AWS_VALUES, BUCKET_URL, matrix, MINIO_BUCKET_ONLY_VALUES, RECIPIENTS, type MatrixCase } from './offsite-sets.js';
import { lowestLevel, podSecurityLevel } from './pod-security.js';
import {
  find,
  fullname,
  helmTemplate,
  parseManifests,
  podTemplateOf,
  renderChart,
  REQUIRED_VALUES,
  resourceIds,
  validateKubernetesObject,
  workloadsOf,
  type Manifest,
  type ValuesOverride,
} from './rendered-chart.js';

/**
 * The chart side of off-site buckets and age encryption, rendered with real Helm 3 and 4: which
 * resources exist, and every pod's flags, variables and volumes, field by field.
 */

const F = fullname();
const IDENTITY_FILE = '/etc/pvc-backup/age/identity.txt';
useNotesProbe();

interface Container {
  name: string;
  args: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}

function containersOf(workload: Manifest): { init: Container[]; main: Container[] } {
  const spec = podTemplateOf(workload).spec;
  return { init: spec.initContainers ?? [], main: spec.containers };
}

function only(workload: Manifest): Container {
  const { init, main } = containersOf(workload);
  expect(init, `${workload.metadata.name} has no init container`).toEqual([]);
  expect(main).toHaveLength(1);
  return main[0]!;
}

function volumes(workload: Manifest): Record<string, any> {
  return Object.fromEntries((podTemplateOf(workload).spec.volumes as { name: string }[]).map((v) => [v.name, v]));
}

function mounts(container: Container): Record<string, { mountPath: string; readOnly?: boolean }> {
  return Object.fromEntries((container.volumeMounts ?? []).map((m) => [m.name, m]));
}

/** The value after each occurrence of `flag`. */
function flagValues(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}

function envNames(container: Container): string[] {
  return (container.env ?? []).map((e) => e.name);
}

const workloadsByRole = (manifests: Manifest[]) => ({
  backup: find(manifests, 'CronJob', F),
  verify: find(manifests, 'CronJob', `${F}-verify`),
  restore: manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!,
  test: find(manifests, 'Pod', `${F}-test`),
});

function secretEnv(secret: string, keys = { id: 'AWS_ACCESS_KEY_ID', secret: 'AWS_SECRET_ACCESS_KEY' }) {
  return [
    { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: secret, key: keys.id } } },
    { name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: secret, key: keys.secret } } },
  ];
}

/** What every pod of a case must carry, whatever the layout. */
function expectNoSecretsInline(manifests: Manifest[]): void {
  for (const workload of workloadsOf(manifests)) {
    const { init, main } = containersOf(workload);
    for (const container of [...init, ...main]) {
      // Credentials only through secretKeyRef, identities only as a mounted file.
      for (const env of container.env ?? []) if (env.name.startsWith('AWS_')) expect(env.value, `${env.name} in ${workload.metadata.name}`).toBeUndefined();
      expect(container.args.join(' ')).not.toMatch(/AGE-SECRET-KEY|AWS_SECRET/);
    }
  }
}

describe('the render matrix: storage layout × restore.from × encryption', () => {
  const cases = matrix();
  const results = new Map<MatrixCase, Map<number, HelmResult>>();
  beforeAll(() => {
    for (const c of cases) results.set(c, new Map(helmBinaries().map((helm) => [helm.major, helmTemplate(helm, c.values)])));
  });

  it.each(cases.filter((c) => c.fails).map((c) => [c.layout, c.from, c.encryption, c] as const))(
    'layout %s, restore.from %s, encryption %s: fails with one line saying what to set',
    (_l, _f, _e, c) => {
      for (const [major, result] of results.get(c)!) {
        expect(result.code, `Helm ${major}`).not.toBe(0);
        expect(result.stderr).toContain(c.fails);
      }
    },
  );

  it.each(cases.filter((c) => !c.fails).map((c) => [c.layout, c.from, c.encryption, c] as const))(
    'layout %s, restore.from %s, encryption %s: the resources, flags, variables and volumes of every pod',
    (_l, _f, _e, c) => {
      const [helm3, helm4] = [results.get(c)!.get(3)!, results.get(c)!.get(4)!];
      expect(helm3.code, helm3.stderr).toBe(0);
      expect(helm4.stdout).toBe(helm3.stdout);
      const manifests = parseManifests(helm3.stdout);
      for (const manifest of manifests) validateKubernetesObject(manifest);
      expectNoSecretsInline(manifests);

      const onVolume = c.layout !== 'bucket';
      const toBucket = c.layout !== 'volume';
      const encrypted = c.encryption !== 'none';
      const identity = c.encryption === 'recipients+identity';
      const ids = resourceIds(manifests);
      expect(ids.includes(`PersistentVolumeClaim/${F}`)).toBe(onVolume);
      expect(ids.some((id) => id.startsWith(`Job/${F}-bind-`))).toBe(onVolume);
      const { backup, verify, restore, test } = workloadsByRole(manifests);

      // Backups: the volume and/or the bucket, encrypted to every recipient; never the identity.
      const backupContainer = only(backup);
      expect(flagValues(backupContainer.args, '--dest')).toEqual(onVolume ? ['/backup'] : []);
      expect(flagValues(backupContainer.args, '--remote')).toEqual(toBucket ? [BUCKET_URL] : []);
      expect(flagValues(backupContainer.args, '--remote-keep-last')).toEqual(toBucket ? ['10'] : []);
      expect(flagValues(backupContainer.args, '--age-recipient')).toEqual(encrypted ? RECIPIENTS : []);
      expect(backupContainer.args).not.toContain('--age-identity-file');
      expect(Object.keys(volumes(backup)).sort()).toEqual([...(onVolume ? ['backup'] : []), 'source', 'tmp'].sort());
      expect(envNames(backupContainer).filter((n) => n.startsWith('AWS_'))).toEqual(toBucket ? ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] : []);

      // Verify: the bucket copies in an init container beside the volume, the bucket alone without one.
      const { init, main } = containersOf(verify);
      expect(init.map((i) => i.name)).toEqual(c.layout === 'volume+bucket' ? ['verify-offsite'] : []);
      expect(main.map((m) => m.name)).toEqual(['verify']);
      for (const container of init) {
        expect(flagValues(container.args, '--remote')).toEqual([BUCKET_URL]);
        expect(container.args).not.toContain('--dest');
        expect(container.env).toEqual(expect.arrayContaining(secretEnv('s3-credentials')));
        expect(mounts(container)).not.toHaveProperty('backup');
      }
      expect(flagValues(main[0]!.args, '--dest')).toEqual(onVolume ? ['/backup'] : []);
      expect(flagValues(main[0]!.args, '--remote')).toEqual(onVolume ? [] : [BUCKET_URL]);
      expect(envNames(main[0]!).includes('AWS_ACCESS_KEY_ID')).toBe(!onVolume);
      for (const container of [...init, ...main, only(test), only(restore)]) {
        expect(flagValues(container.args, '--age-identity-file')).toEqual(identity ? [IDENTITY_FILE] : []);
        expect(mounts(container)['age-identity']).toEqual(identity ? { name: 'age-identity', mountPath: '/etc/pvc-backup/age', readOnly: true } : undefined);
      }
      for (const workload of [verify, test, restore]) {
        expect(volumes(workload)['age-identity']?.secret).toEqual(identity ? { secretName: 'age-identity', items: [{ key: 'identity', path: 'identity.txt' }], defaultMode: 0o400 } : undefined);
        expect(volumes(workload).backup !== undefined).toBe(onVolume);
      }

      // helm test: the newest archive where the archives are.
      expect(flagValues(only(test).args, '--dest')).toEqual(onVolume ? ['/backup'] : []);
      expect(flagValues(only(test).args, '--remote')).toEqual(onVolume ? [] : [BUCKET_URL]);

      // Restore: the archive from restore.from; the volume (done marker, snapshot) whenever there is one.
      const restoreContainer = only(restore);
      expect(flagValues(restoreContainer.args, '--dest')).toEqual(onVolume ? ['/backup'] : []);
      expect(flagValues(restoreContainer.args, '--remote')).toEqual(c.restoresFrom === 'offsite' ? [BUCKET_URL] : []);
      expect(envNames(restoreContainer).includes('AWS_SECRET_ACCESS_KEY')).toBe(c.restoresFrom === 'offsite');
      expect(restoreContainer.args).not.toContain('--age-recipient');

      // The default profile's level, whatever the bucket and the keys add.
      expect(lowestLevel(workloadsOf(manifests).map((w) => podSecurityLevel(podTemplateOf(w))))).toBe('baseline');
    },
  );
});

describe.each(helmBinaries())('field by field on Helm $major', (helm) => {
  it('a 3-2-1 install on AWS: every bucket setting on backups, the read settings on verify, IRSA, age', () => {
    const manifests = renderChart(helm, AWS_VALUES);
    const { backup, verify, restore, test } = workloadsByRole(manifests);
    const bucket = ['--remote', 's3://acme-backups/prod/shop', '--s3-region', 'eu-central-1'];
    const uploads = ['--s3-storage-class', 'STANDARD_IA', '--s3-sse', 'aws:kms', '--s3-sse-kms-key-id', 'alias/backups', '--s3-max-parts', '10000'];
    const events = ['--namespace', 'apps', '--events', '--claim-name', 'shop-data'];
    const freshness = ['--schedule', '0 0 * * *', '--time-zone', 'Etc/UTC', '--grace', '1h'];
    const recipients = RECIPIENTS.flatMap((r) => ['--age-recipient', r]);
    const identity = ['--age-identity-file', IDENTITY_FILE];

    expect(only(backup).args).toEqual([
      'backup', '--source', '/data', '--dest', '/backup', ...bucket, ...uploads, '--remote-keep-last', '30',
      '--prefix', 'shop', ...recipients, '--compression', 'zstd', '--keep-last', '7', ...events,
    ]);
    const { init, main } = containersOf(verify);
    expect(init.map((c) => c.args)).toEqual([['verify', ...bucket, '--prefix', 'shop', '--all', ...identity, ...freshness, ...events]]);
    expect(main.map((c) => c.args)).toEqual([['verify', '--dest', '/backup', '--prefix', 'shop', '--all', ...identity, ...freshness, ...events]]);
    const restoreArgs = only(restore).args;
    expect(restoreArgs).toEqual([
      'restore', '--dest', '/backup', ...bucket, ...uploads, '--prefix', 'shop', '--archive', 'latest', '--target', '/data',
      '--mode', 'replace', '--request-id', restore.metadata.name.slice(-8), ...identity, ...events,
    ]);
    expect(only(test).args).toEqual(['verify', '--dest', '/backup', '--prefix', 'shop', '--latest', ...identity]);

    // IRSA: no credentials in any pod; the role is on the ServiceAccount the pods run as.
    for (const workload of workloadsOf(manifests)) {
      const { init: i, main: m } = containersOf(workload);
      for (const container of [...i, ...m]) expect(envNames(container).filter((n) => n.startsWith('AWS_'))).toEqual([]);
      expect(podTemplateOf(workload).spec.serviceAccountName).toBe(F);
    }
    expect(find(manifests, 'ServiceAccount', F).metadata.annotations).toEqual({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::111122223333:role/shop-backup' });

    // The identity: its own key, one file, read-only, 0400, in verify, restore and helm test only.
    for (const workload of [verify, restore, test]) {
      expect(volumes(workload)['age-identity']).toEqual({ name: 'age-identity', secret: { secretName: 'shop-age', items: [{ key: 'key.txt', path: 'identity.txt' }], defaultMode: 0o400 } });
    }
    expect(volumes(backup)).not.toHaveProperty('age-identity');
    // The init container runs with the verify container's image, resources and security context.
    for (const field of ['image', 'imagePullPolicy', 'resources', 'securityContext']) expect((init[0] as any)[field], field).toEqual((main[0] as any)[field]);
  });

  it('a bucket-only install on MinIO: no backup volume anywhere, credentials from the Secret\'s own keys', () => {
    const manifests = renderChart(helm, MINIO_BUCKET_ONLY_VALUES);
    expect(resourceIds(manifests).filter((id) => id.startsWith('PersistentVolumeClaim/') || id.includes('-bind-'))).toEqual([]);
    const { backup, verify, restore, test } = workloadsByRole(manifests);
    const bucket = ['--remote', 's3://backups', '--s3-endpoint', 'http://minio.minio.svc:9000', '--s3-path-style'];
    const events = ['--namespace', 'apps', '--events', '--claim-name', 'shop-data'];
    expect(only(backup).args).toEqual(['backup', '--source', '/data', ...bucket, '--s3-max-parts', '1000', '--remote-keep-last', '10', '--prefix', 'shop', '--compression', 'gzip', '--keep-last', '10', ...events]);
    expect(only(verify).args).toEqual(['verify', ...bucket, '--prefix', 'shop', '--all', '--schedule', '0 0 * * *', '--time-zone', 'Etc/UTC', '--grace', '1h', ...events]);
    // The pre-restore snapshot goes to the bucket, so the restore gets the upload settings too.
    expect(only(restore).args).toEqual([
      'restore', ...bucket, '--s3-max-parts', '1000', '--prefix', 'shop', '--archive', 'latest', '--target', '/data', '--mode', 'replace',
      '--request-id', restore.metadata.name.slice(-8), ...events,
    ]);
    expect(only(test).args).toEqual(['verify', ...bucket, '--prefix', 'shop', '--latest']);
    const env = secretEnv('minio-backup', { id: 'accesskey', secret: 'secretkey' });
    for (const workload of [backup, verify, restore, test]) {
      expect(only(workload).env!.filter((e) => e.name.startsWith('AWS_'))).toEqual(env);
      expect(volumes(workload)).not.toHaveProperty('backup');
      expect(mounts(only(workload))).not.toHaveProperty('backup');
    }
  });

  it('offsite.pathStyle false is said explicitly; null leaves it to the runner', () => {
    const args = (pathStyle: boolean | null) =>
      only(find(renderChart(helm, { ...REQUIRED_VALUES, offsite: { enabled: true, url: BUCKET_URL, endpoint: 'https://s3.example.com', pathStyle } }), 'CronJob', F)).args;
    expect(args(false)).toContain('--no-s3-path-style');
    expect(args(false)).not.toContain('--s3-path-style');
    expect(args(null).filter((a) => a.includes('path-style'))).toEqual([]);
  });

  it('offsite.keepLast defaults to what the volume keeps (backup.keep.last, else backup.keepLast)', () => {
    const keep = (backup: ValuesOverride['backup']) => flagValues(only(find(renderChart(helm, { ...REQUIRED_VALUES, backup, offsite: { enabled: true, url: BUCKET_URL } }), 'CronJob', F)).args, '--remote-keep-last');
    expect(keep({ keepLast: 4 })).toEqual(['4']);
    expect(keep({ keepLast: 4, keep: { last: 6 } })).toEqual(['6']);
  });

  it.each([
    ['the baseline profile', { securityProfile: 'baseline' }, 'baseline', { verify: 0o400, restore: 0o400 }],
    // The restricted restore pod has no fsGroup (it would re-own the application's volume), so 0400 root-owned would be unreadable.
    ['the restricted profile', { securityProfile: 'restricted' }, 'restricted', { verify: 0o400, restore: 0o444 }],
    ['a non-root uid by hand, without fsGroup', { podSecurityContext: { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true } }, 'baseline', { verify: 0o444, restore: 0o444 }],
  ] as const)('%s: pods meet %s with the bucket and the identity, identity modes %j', (_name, security, level, modes) => {
    const manifests = renderChart(helm, { ...AWS_VALUES, ...security, offsite: { ...AWS_VALUES.offsite, existingSecret: 's3' } });
    expect(lowestLevel(workloadsOf(manifests).map((w) => podSecurityLevel(podTemplateOf(w))))).toBe(level);
    const { verify, restore, test } = workloadsByRole(manifests);
    expect(volumes(verify)['age-identity'].secret.defaultMode).toBe(modes.verify);
    expect(volumes(test)['age-identity'].secret.defaultMode).toBe(modes.verify);
    expect(volumes(restore)['age-identity'].secret.defaultMode).toBe(modes.restore);
    const renderedNotes = renderNotes(helm, { ...AWS_VALUES, ...security });
    expect(renderedNotes).toContain(`meet the "${level}" level`);
  });
});

describe.each(helmBinaries())('values checks on Helm $major', (helm) => {
  const base = REQUIRED_VALUES;
  it.each([
    ['offsite.enabled without a url', { ...base, offsite: { enabled: true } }, 'url'],
    ['a url that is not s3://', { ...base, offsite: { enabled: true, url: 'https://backups.s3.amazonaws.com/shop' } }, 'url'],
    ['a url with a space', { ...base, offsite: { enabled: true, url: 's3://backups/my shop' } }, 'url'],
    ['an endpoint without a scheme', { ...base, offsite: { enabled: true, url: BUCKET_URL, endpoint: 'minio:9000' } }, 'endpoint'],
    ['an unknown server-side encryption', { ...base, offsite: { enabled: true, url: BUCKET_URL, sse: 'KMS' } }, 'sse'],
    ['a bucket keepLast of 0', { ...base, offsite: { enabled: true, url: BUCKET_URL, keepLast: 0 } }, 'keepLast'],
    ['maxParts above S3\'s limit', { ...base, offsite: { enabled: true, url: BUCKET_URL, maxParts: 20000 } }, 'maxParts'],
    ['a typo in secretKeys', { ...base, offsite: { secretKeys: { accessKey: 'id' } } }, 'accessKey'],
    ['an unknown restore.from', { ...base, restore: { from: 's3' } }, 'from'],
    ['an SSH key as a recipient', { ...base, encryption: { recipients: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'] } }, 'recipients'],
    ['a truncated recipient', { ...base, encryption: { recipients: [RECIPIENTS[0]!.slice(0, -1)] } }, 'recipients'],
    ['an identity as a recipient', { ...base, encryption: { recipients: ['AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ'] } }, 'recipients'],
    ['recipients as one string', { ...base, encryption: { recipients: RECIPIENTS[0] } }, 'recipients'],
    ['an extra volume named like the identity\'s', { ...base, extraVolumes: [{ name: 'age-identity', emptyDir: {} }] }, 'extraVolumes'],
    ['an extra mount over the identity', { ...base, extraVolumeMounts: [{ name: 'x', mountPath: '/etc/pvc-backup/age' }] }, 'mountPath'],
  ] as const)('the schema rejects %s', (_name, values, key) => {
    const result = helmTemplate(helm, values);
    expect(result.code, result.stdout).not.toBe(0);
    expect(result.stderr).toMatch(/schema/i);
    expect(result.stderr).toContain(key);
  });

  it.each([
    ['storage.enabled=false without the bucket', { ...base, storage: { enabled: false } }, 'storage.enabled=false keeps the archives only in a bucket: set offsite.enabled=true and offsite.url=s3://BUCKET/PATH'],
    ['an encrypted archive to restore without the identity', { ...base, restore: { enabled: true, archive: 'shop-20260101T000000Z.tar.zst.age' } }, 'restore.archive shop-20260101T000000Z.tar.zst.age is encrypted: set encryption.existingSecret'],
    ['a KMS key without aws:kms', { ...base, offsite: { enabled: true, url: BUCKET_URL, sseKmsKeyId: 'alias/x' } }, 'offsite.sseKmsKeyId is used only with offsite.sse=aws:kms'],
  ] as const)('the render fails on %s, saying what to set', (_name, values, message) => {
    const result = helmTemplate(helm, values);
    expect(result.code).not.toBe(0);
    // Helm's one error line (then its "Use --debug" hint).
    const errors = result.stderr.split('\n').filter((line) => line.includes('Error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(message);
  });

  it('an encrypted archive restores with the identity, and a plain one without', () => {
    expect(helmTemplate(helm, { ...base, restore: { enabled: true, archive: 'shop-20260101T000000Z.tar.zst.age' }, encryption: { existingSecret: 'k' } }).code).toBe(0);
    expect(helmTemplate(helm, { ...base, restore: { enabled: true, archive: 'shop-20260101T000000Z.tar.zst' } }).code).toBe(0);
  });
});

describe.each(helmBinaries())('NOTES with a bucket and age on Helm $major', (helm) => {
  it('bucket only: the list pod lists the bucket with the flags and credentials the verify pods use, and no backup volume', () => {
    const notes = renderNotes(helm, MINIO_BUCKET_ONLY_VALUES);
    const pod = listPodOf(notes);
    const verify = only(find(renderChart(helm, MINIO_BUCKET_ONLY_VALUES), 'CronJob', `${F}-verify`));
    const bucketFlags = verify.args.slice(1, verify.args.indexOf('--prefix'));
    expect(pod.spec.containers[0].args).toEqual(['list', ...bucketFlags, '--prefix', 'shop']);
    expect(pod.spec.containers[0].env.slice(1)).toEqual(verify.env!.filter((e) => e.name.startsWith('AWS_')));
    expect(pod.spec.volumes.map((v: { name: string }) => v.name)).toEqual(['tmp']);
    expect(notes).toContain('is backed up into the bucket s3://backups only (storage.enabled=false).');
    expect(notes).toContain('each backup streams straight into the bucket (no local copy); the bucket keeps the newest 10.');
    expect(notes).toContain('a restore\'s pre-restore snapshot is stored there too');
    expect(notes).toContain('aws s3 ls s3://backups/ --endpoint-url http://minio.minio.svc:9000');
    expect(notes).toContain('RESTORE: Job');
    expect(notes).toContain('from the bucket s3://backups into "shop-data"');
    expect(notes).not.toContain('is kept on helm uninstall');
    expect(notes).not.toContain('first consumer');
  });

  it('3-2-1 on AWS: what runs where, how to restore from the bucket and check it by hand, where the identity is', () => {
    const notes = renderNotes(helm, { ...AWS_VALUES, restore: { enabled: false } });
    expect(notes).toContain('is backed up into "shop-pvc-backup", with a copy in s3://acme-backups/prod/shop, encrypted with age.');
    expect(notes).toContain('each backup is made and verified on "shop-pvc-backup" first, then uploaded with its sidecars; the bucket keeps the newest 30');
    expect(notes).toContain('the verify Job checks the bucket copies (init container verify-offsite), then the volume (container verify)');
    expect(notes).toContain('logs -f "job/$JOB" --pod-running-timeout=5m --all-containers');
    expect(notes).toContain('(IRSA: role arn:aws:iam::111122223333:role/shop-backup)');
    expect(notes).toContain('add --set restore.from=offsite to the restore command below');
    expect(notes).toContain('aws s3api head-object --bucket acme-backups --key prod/shop/<archive name>   # its sha256 metadata');
    expect(notes).toContain('archives are encrypted to 2 recipients (<name>.tar.*.age); the manifest, which names every file, is encrypted too');
    expect(notes).toContain('the identity is key "key.txt" of Secret "shop-age", mounted read-only into the verify and restore pods only');
    expect(notes).not.toContain('WARNING');
  });

  it('warns when the archives are encrypted but no identity is there to verify or restore them, and says how to add it', () => {
    const notes = renderNotes(helm, { ...REQUIRED_VALUES, encryption: { recipients: RECIPIENTS } });
    expect(notes).toContain('WARNING: encryption.existingSecret is not set: the verify Job checks encrypted archives by checksum only, and a restore of an encrypted archive fails.');
    expect(notes).toContain('kubectl -n apps create secret generic NAME --from-file=identity=backup-key.txt');
  });

  it('says how credentials are found without a Secret or an IRSA annotation', () => {
    const notes = renderNotes(helm, { ...REQUIRED_VALUES, offsite: { enabled: true, url: BUCKET_URL } });
    expect(notes).toContain('no offsite.existingSecret, so the AWS SDK\'s own chain must find them: IRSA');
  });

  it('says nothing of buckets or keys without them', () => {
    const notes = renderNotes(helm, REQUIRED_VALUES);
    expect(notes).not.toMatch(/s3:|Off-site|Encryption|--all-containers/);
  });
});
