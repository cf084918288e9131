import type { Values } from './values.js';

type DeepPartial<T> = T extends unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/**
 * Values files for chart-testing, written to charts/pvc-backup/ci/<name>-values.yaml. `ct lint`
 * lints the chart once per file; `ct install` installs each one, so each names a source claim
 * (`data`) that must exist in the test namespace, and an image the cluster can pull.
 */
export const CI_VALUES: Record<string, { about: string; values: DeepPartial<Values> }> = {
  default: {
    about: 'the defaults (baseline profile), scheduled checks',
    values: { source: { claimName: 'data' }, image: { repository: 'registry.example.com/pvc-backup' }, verify: { schedule: '30 6 * * *' } },
  },
  restricted: {
    about: 'the restricted profile: non-root pods without capabilities',
    values: { source: { claimName: 'data' }, image: { repository: 'registry.example.com/pvc-backup' }, securityProfile: 'restricted', nonRoot: { runAsUser: 1000, runAsGroup: 1000 } },
  },
  tuned: {
    about: 'zstd, excludes, a time zone, resources and scheduling per component',
    values: {
      source: { claimName: 'data', subPath: 'app' },
      image: { repository: 'registry.example.com/pvc-backup', pullPolicy: 'Always' },
      backup: {
        schedule: '15 */6 * * *',
        timeZone: 'Europe/Berlin',
        compression: 'zstd',
        exclude: ['cache/**', '*.tmp'],
        keepLast: 20,
        resources: { requests: { cpu: '500m', memory: '320Mi' }, limits: { memory: '1Gi' } },
      },
      verify: { schedule: '@daily', tolerations: [] },
      commonLabels: { 'example.com/team': 'storage' },
    },
  },
  offsite: {
    about: 'off-site copies in an S3-compatible bucket (MinIO, credentials from a Secret) beside the backup claim, age-encrypted',
    values: {
      source: { claimName: 'data' },
      image: { repository: 'registry.example.com/pvc-backup' },
      backup: { compression: 'zstd' },
      offsite: { enabled: true, url: 's3://backups/ci', endpoint: 'http://minio.minio.svc:9000', existingSecret: 'backup-s3', keepLast: 20 },
      encryption: { recipients: ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'] },
    },
  },
  'bucket-only': {
    about: 'no backup claim: backups stream straight into the bucket, verify and restore read it',
    values: {
      source: { claimName: 'data' },
      image: { repository: 'registry.example.com/pvc-backup' },
      storage: { enabled: false },
      offsite: { enabled: true, url: 's3://backups/ci-bucket-only', endpoint: 'http://minio.minio.svc:9000', existingSecret: 'backup-s3' },
      securityProfile: 'restricted',
    },
  },
  restore: {
    about: 'a restore request next to the schedule',
    values: { source: { claimName: 'data' }, image: { repository: 'registry.example.com/pvc-backup' }, restore: { enabled: true, mode: 'merge' } },
  },
};
