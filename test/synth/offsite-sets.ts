import { ageKeygen } from '../helpers/age.js';
import { REQUIRED_VALUES, type ValuesOverride } from './rendered-chart.js';

/**
 * Values for the off-site bucket (offsite.*, storage.enabled, restore.from) and age encryption
 * (encryption.*). Their pods run flags the runner learns with the off-site and encryption
 * commands, so they are kept out of OVERRIDE_SETS, whose pods runner-args.test.ts feeds to the
 * runner's parser (add them there when the runner takes --remote, --s3-* and --age-*).
 */

/** Two real key pairs from age-keygen (only the public halves reach the values). */
export const RECIPIENTS = [ageKeygen().recipient, ageKeygen().recipient];

export const BUCKET_URL = 's3://backups/shop';

export type Layout = 'volume' | 'volume+bucket' | 'bucket';
export type Encryption = 'none' | 'recipients' | 'recipients+identity';
export type RestoreFrom = null | 'local' | 'offsite';

export interface MatrixCase {
  layout: Layout;
  from: RestoreFrom;
  encryption: Encryption;
  values: ValuesOverride;
  /** The fail message the render must stop with, for combinations that make no sense. */
  fails?: string;
  /** Where the restore Job reads (when the render succeeds). */
  restoresFrom?: 'local' | 'offsite';
}

/** Every combination of layout × restore.from × encryption, with a restore Job, the bucket with credentials from a Secret. */
export function matrix(): MatrixCase[] {
  const cases: MatrixCase[] = [];
  for (const layout of ['volume', 'volume+bucket', 'bucket'] as const) {
    for (const from of [null, 'local', 'offsite'] as const) {
      for (const encryption of ['none', 'recipients', 'recipients+identity'] as const) {
        const values: ValuesOverride = {
          ...REQUIRED_VALUES,
          storage: { enabled: layout !== 'bucket' },
          offsite: layout === 'volume' ? {} : { enabled: true, url: BUCKET_URL, existingSecret: 's3-credentials' },
          encryption: encryption === 'none' ? {} : { recipients: RECIPIENTS, ...(encryption === 'recipients+identity' ? { existingSecret: 'age-identity' } : {}) },
          // null as the default, not written: Helm 3 drops a null a user writes, Helm 4 keeps it (and the bind Job's hash of the values differs).
          restore: from === null ? { enabled: true } : { enabled: true, from },
        };
        const resolved = from ?? (layout === 'bucket' ? 'offsite' : 'local');
        let fails: string | undefined;
        if (resolved === 'offsite' && layout === 'volume') fails = 'restore.from=offsite reads the archive from the bucket: set offsite.enabled=true';
        if (resolved === 'local' && layout === 'bucket') fails = 'restore.from=local needs the backup volume, which storage.enabled=false does not have';
        cases.push({ layout, from, encryption, values, fails, restoresFrom: fails ? undefined : resolved });
      }
    }
  }
  return cases;
}

/** A 3-2-1 install on AWS with every bucket setting, IRSA and encryption, field by field. */
export const AWS_VALUES: ValuesOverride = {
  ...REQUIRED_VALUES,
  serviceAccount: { annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::111122223333:role/shop-backup' } },
  backup: { keepLast: 7, compression: 'zstd' },
  offsite: {
    enabled: true,
    url: 's3://acme-backups/prod/shop',
    region: 'eu-central-1',
    keepLast: 30,
    storageClass: 'STANDARD_IA',
    sse: 'aws:kms',
    sseKmsKeyId: 'alias/backups',
    maxParts: 10000,
  },
  encryption: { recipients: RECIPIENTS, existingSecret: 'shop-age', identityKey: 'key.txt' },
  restore: { enabled: true, from: 'offsite' },
};

/** A bucket-only install on MinIO with credentials from a Secret of its own key names. */
export const MINIO_BUCKET_ONLY_VALUES: ValuesOverride = {
  ...REQUIRED_VALUES,
  storage: { enabled: false },
  offsite: {
    enabled: true,
    url: 's3://backups',
    endpoint: 'http://minio.minio.svc:9000',
    pathStyle: true,
    existingSecret: 'minio-backup',
    secretKeys: { accessKeyId: 'accesskey', secretAccessKey: 'secretkey' },
    maxParts: 1000,
  },
  restore: { enabled: true },
};
