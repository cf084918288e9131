import { fullname, type ValuesOverride } from './rendered-chart.js';

/**
 * Values a user might pass, each with the resources the contract says the chart renders for
 * them (release "shop"). The restore Job's name ends in a request hash; `restoreJob: true`
 * stands for exactly one `Job/shop-pvc-backup-restore-<8 hex>`.
 */
export interface OverrideSet {
  name: string;
  values: ValuesOverride;
  resources: string[];
  restoreJob?: boolean;
}

const F = fullname();
const claim = { claimName: 'shop-data' };
const serviceAccount = `ServiceAccount/${F}`;
const backupClaim = `PersistentVolumeClaim/${F}`;
const backupCronJob = `CronJob/${F}`;
const verifyCronJob = `CronJob/${F}-verify`;
const eventsRole = [`Role/${F}`, `RoleBinding/${F}`];
const everyDefault = [serviceAccount, backupClaim, backupCronJob, verifyCronJob, ...eventsRole];

export const OVERRIDE_SETS: OverrideSet[] = [
  {
    name: 'defaults plus a claim name',
    values: { source: claim },
    resources: everyDefault,
  },
  {
    name: 'schedule, time zone and backup tuning',
    values: {
      source: { ...claim, subPath: 'uploads' },
      backup: {
        schedule: '0 */6 * * *',
        timeZone: 'Europe/Berlin',
        concurrencyPolicy: 'Replace',
        startingDeadlineSeconds: 300,
        successfulJobsHistoryLimit: 5,
        failedJobsHistoryLimit: 1,
        backoffLimit: 0,
        activeDeadlineSeconds: 7200,
        ttlSecondsAfterFinished: 86400,
        prefix: 'nightly',
        compression: 'zstd',
        level: 19,
        keepLast: 30,
        exclude: ['cache/**', '*.tmp', '-weird name'],
        allowEmpty: true,
        skipUnreadable: true,
      },
      verify: { grace: '90m' },
    },
    resources: everyDefault,
  },
  {
    name: 'retention tiers',
    values: { source: claim, backup: { keepLast: 30, keep: { last: 5, hourly: 0, daily: 7, weekly: 4, monthly: 12, yearly: 3 } } },
    resources: everyDefault,
  },
  {
    name: 'existing storage claim',
    values: { source: claim, storage: { create: false, existingClaim: 'archive-store' } },
    resources: [serviceAccount, backupCronJob, verifyCronJob, ...eventsRole],
  },
  {
    name: 'storage options',
    values: {
      source: claim,
      storage: { size: '50Gi', storageClassName: 'fast-ssd', accessModes: ['ReadWriteMany'], annotations: { 'example.com/tier': 'gold' }, keepOnUninstall: false },
    },
    resources: everyDefault,
  },
  {
    name: 'restore enabled',
    values: {
      source: { ...claim, subPath: 'uploads' },
      restore: {
        enabled: true,
        archive: 'shop-20240601T000000Z.tar.gz',
        mode: 'merge',
        targetClaim: 'shop-data-copy',
        targetSubPath: '',
        nonce: 'second-try',
        snapshot: false,
        allowUnverified: true,
        backoffLimit: 0,
        activeDeadlineSeconds: 3600,
      },
    },
    resources: everyDefault,
    restoreJob: true,
  },
  {
    name: 'verify scheduled, backups suspended',
    values: { source: claim, backup: { suspend: true }, verify: { schedule: '30 6 * * *', grace: '2h', startingDeadlineSeconds: null, activeDeadlineSeconds: 1800 } },
    resources: everyDefault,
  },
  {
    name: 'colocation with the application pod',
    values: {
      source: { ...claim, colocateWith: { 'app.kubernetes.io/name': 'shop' } },
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] }] }],
          },
        },
      },
      restore: { enabled: true },
    },
    resources: everyDefault,
    restoreJob: true,
  },
  {
    name: 'resources, scheduling and pod settings',
    values: {
      source: claim,
      image: { repository: 'registry.example.com/tools/pvc-backup', tag: '1.2.3', pullPolicy: 'Always' },
      imagePullSecrets: [{ name: 'registry-login' }],
      resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '2', memory: '1Gi' } },
      nodeSelector: { 'kubernetes.io/os': 'linux', 'node.example.com/pool': 'storage' },
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'storage', effect: 'NoSchedule' }],
      podAnnotations: { 'example.com/owner': 'team-shop' },
      podLabels: { 'example.com/cost-center': 'c42' },
      extraEnv: [
        { name: 'PVC_BACKUP_PROGRESS_INTERVAL', value: '30s' },
        { name: 'HTTP_PROXY', valueFrom: { secretKeyRef: { name: 'proxy', key: 'url' } } },
      ],
      serviceAccount: { create: false, name: 'backup-runner' },
      restore: { enabled: true },
    },
    resources: [backupClaim, backupCronJob, verifyCronJob, ...eventsRole],
    restoreJob: true,
  },
  {
    name: 'fully non-root',
    values: {
      source: claim,
      podSecurityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      backup: { addCapabilities: [] },
      verify: { addCapabilities: [] },
      restore: { enabled: true, addCapabilities: [] },
    },
    resources: everyDefault,
    restoreJob: true,
  },
  {
    name: 'only the backup claim',
    values: { source: claim, backup: { enabled: false }, verify: { enabled: false }, serviceAccount: { create: false } },
    resources: [backupClaim],
  },
];

/** A set by name (throws on a typo, so tests never silently check nothing). */
export function overrideSet(name: string): OverrideSet {
  const set = OVERRIDE_SETS.find((s) => s.name === name);
  if (!set) throw new Error(`no override set "${name}"`);
  return set;
}
