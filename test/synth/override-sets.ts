import type { Level } from './pod-security.js';
import { fullname, REQUIRED_VALUES, type ValuesOverride } from './rendered-chart.js';

/**
 * Values a user might pass, each with the resources the contract says the chart renders for
 * them (release "shop") and the Pod Security level every rendered pod must meet. Names ending
 * in a hash stand for one object each: `restoreJob: true` for one `Job/shop-pvc-backup-restore-<8 hex>`,
 * `bindJob: true` for one `Job/shop-pvc-backup-bind-<8 hex>`.
 */
export interface OverrideSet {
  name: string;
  values: ValuesOverride;
  resources: string[];
  restoreJob?: boolean;
  bindJob?: boolean;
  /** The Pod Security level the pods meet (the NOTES say the same). */
  level: Level;
}

const F = fullname();
const claim = REQUIRED_VALUES.source;
const base = REQUIRED_VALUES;
const serviceAccount = `ServiceAccount/${F}`;
const backupClaim = `PersistentVolumeClaim/${F}`;
const backupCronJob = `CronJob/${F}`;
const verifyCronJob = `CronJob/${F}-verify`;
const testPod = `Pod/${F}-test`;
const eventsRole = [`Role/${F}`, `RoleBinding/${F}`];
const everyDefault = [serviceAccount, backupClaim, backupCronJob, verifyCronJob, testPod, ...eventsRole];

export const OVERRIDE_SETS: OverrideSet[] = [
  {
    name: 'defaults plus a claim name and an image',
    values: base,
    resources: everyDefault,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'schedule, time zone and backup tuning',
    values: {
      ...base,
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
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'retention tiers',
    values: { ...base, backup: { keepLast: 30, keep: { last: 5, hourly: 0, daily: 7, weekly: 4, monthly: 12, yearly: 3 } } },
    resources: everyDefault,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'existing storage claim',
    values: { ...base, storage: { create: false, existingClaim: 'archive-store' } },
    resources: [serviceAccount, backupCronJob, verifyCronJob, testPod, ...eventsRole],
    level: 'baseline',
  },
  {
    name: 'storage options',
    values: {
      ...base,
      storage: { size: '50Gi', storageClassName: 'fast-ssd', accessModes: ['ReadWriteMany'], annotations: { 'example.com/tier': 'gold' }, keepOnUninstall: false, bindJob: { activeDeadlineSeconds: 600 } },
    },
    resources: everyDefault,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'restore enabled',
    values: {
      ...base,
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
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'verify scheduled, backups suspended',
    values: { ...base, backup: { suspend: true }, verify: { schedule: '30 6 * * *', grace: '2h', startingDeadlineSeconds: null, activeDeadlineSeconds: 1800 } },
    resources: everyDefault,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'colocation with the application pod',
    values: {
      ...base,
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
    bindJob: true,
    level: 'baseline',
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
      priorityClassName: 'backup-low',
      runtimeClassName: 'gvisor',
      terminationGracePeriodSeconds: 120,
      extraEnv: [
        { name: 'PVC_BACKUP_PROGRESS_INTERVAL', value: '30s' },
        { name: 'HTTP_PROXY', valueFrom: { secretKeyRef: { name: 'proxy', key: 'url' } } },
      ],
      extraEnvFrom: [{ configMapRef: { name: 'backup-settings' } }, { secretRef: { name: 'backup-secrets', optional: true }, prefix: 'X_' }],
      extraVolumes: [{ name: 'ca', configMap: { name: 'corporate-ca' } }],
      extraVolumeMounts: [{ name: 'ca', mountPath: '/etc/ssl/corporate', readOnly: true }],
      serviceAccount: { create: false, name: 'backup-runner' },
      restore: { enabled: true },
    },
    resources: [backupClaim, backupCronJob, verifyCronJob, testPod, ...eventsRole],
    restoreJob: true,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'per-component scheduling and resources',
    values: {
      ...base,
      nodeSelector: { pool: 'general' },
      tolerations: [{ key: 'general', operator: 'Exists' }],
      affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { app: 'x' } } } }] } },
      backup: {
        resources: { requests: { cpu: '1', memory: '512Mi' }, limits: { memory: '1Gi' } },
        nodeSelector: { pool: 'storage' },
        tolerations: [{ key: 'storage', operator: 'Exists', effect: 'NoSchedule' }],
      },
      verify: { resources: { requests: { cpu: '50m', memory: '200Mi' } }, affinity: {}, nodeSelector: {} },
      restore: { enabled: true, tolerations: [], affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, preference: { matchExpressions: [{ key: 'fast', operator: 'Exists' }] } }] } } },
    },
    resources: everyDefault,
    restoreJob: true,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'Helm conventions: globals, namespace, common labels and annotations',
    values: {
      ...base,
      global: { imageRegistry: 'mirror.example.com', imagePullSecrets: ['mirror-login', { name: 'second-login' }], storageClass: 'zonal-ssd' },
      imagePullSecrets: ['mirror-login', { name: 'own-login' }],
      namespaceOverride: 'backups',
      commonLabels: { 'example.com/team': 'storage', 'app.kubernetes.io/name': 'must-not-win' },
      commonAnnotations: { 'example.com/contact': 'storage@example.com' },
      restore: { enabled: true },
    },
    resources: everyDefault,
    restoreJob: true,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'fully non-root by hand',
    values: {
      ...base,
      podSecurityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      backup: { addCapabilities: [] },
      verify: { addCapabilities: [] },
      restore: { enabled: true, addCapabilities: [] },
    },
    resources: everyDefault,
    restoreJob: true,
    bindJob: true,
    level: 'restricted',
  },
  {
    name: 'restricted profile',
    values: { ...base, securityProfile: 'restricted', nonRoot: { runAsUser: 70, runAsGroup: 70 }, restore: { enabled: true } },
    resources: everyDefault,
    restoreJob: true,
    bindJob: true,
    level: 'restricted',
  },
  {
    name: 'a capability beyond baseline',
    values: { ...base, backup: { addCapabilities: ['DAC_READ_SEARCH'] } },
    resources: everyDefault,
    bindJob: true,
    level: 'privileged',
  },
  {
    name: 'a hostPath extra volume and an AppArmor annotation',
    values: {
      ...base,
      securityProfile: 'restricted',
      extraVolumes: [{ name: 'host-ca', hostPath: { path: '/etc/ssl/certs', type: 'Directory' } }],
      extraVolumeMounts: [{ name: 'host-ca', mountPath: '/etc/ssl/host', readOnly: true }],
      podAnnotations: { 'container.apparmor.security.beta.kubernetes.io/backup': 'unconfined' },
    },
    resources: everyDefault,
    bindJob: true,
    level: 'privileged',
  },
  {
    name: 'only the backup claim',
    values: { ...base, backup: { enabled: false }, verify: { enabled: false }, serviceAccount: { create: false }, tests: { enabled: false } },
    resources: [backupClaim],
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'consistent backups: dumps, SQLite, restore that scales down',
    values: {
      ...base,
      source: { ...claim, colocateWith: { 'app.kubernetes.io/name': 'shop' } },
      events: { enabled: false },
      backup: {
        preBackup: [
          {
            name: 'postgres',
            image: 'postgres:16',
            command: ['pg_dump', '--format=custom', '--file=shop.dump'],
            env: [{ name: 'PGHOST', value: 'shop-postgres' }, { name: 'PGPASSWORD', valueFrom: { secretKeyRef: { name: 'shop-postgres', key: 'password' } } }],
            envFrom: [{ secretRef: { name: 'shop-postgres-env' } }],
            resources: { requests: { cpu: '50m', memory: '64Mi' } },
          },
          { name: 'redis', image: 'redis:7', command: ['redis-cli'], args: ['-h', 'shop-redis', '--rdb', 'dump.rdb'] },
        ],
        sqlite: ['*.db', 'data/app.sqlite'],
      },
      restore: {
        enabled: true,
        scaleDown: [
          { kind: 'Deployment', name: 'shop' },
          { kind: 'StatefulSet', name: 'shop-db' },
          { kind: 'Deployment', name: 'shop-worker' },
        ],
        scaleDownTimeout: '90s',
      },
    },
    resources: [serviceAccount, backupClaim, backupCronJob, verifyCronJob, testPod, `Role/${F}-scale-down`, `RoleBinding/${F}-scale-down`],
    restoreJob: true,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'consistent backups under the restricted profile',
    values: {
      ...base,
      securityProfile: 'restricted',
      nonRoot: { runAsUser: 1000, runAsGroup: 1000 },
      backup: { preBackup: [{ name: 'postgres', image: 'postgres:16', command: ['pg_dump', '--file=shop.sql'] }] },
      restore: { enabled: true, scaleDown: [{ kind: 'Deployment', name: 'shop' }] },
    },
    resources: [...everyDefault, `Role/${F}-scale-down`, `RoleBinding/${F}-scale-down`],
    restoreJob: true,
    bindJob: true,
    level: 'restricted',
  },
  {
    name: 'dumps only, no source claim',
    values: {
      image: base.image,
      backup: { preBackup: [{ name: 'postgres', image: 'postgres:16', command: ['pg_dumpall', '--file=all.sql'] }] },
      // Only what a restore would need: without a source claim it has no target of its own.
      restore: { targetClaim: 'shop-data' },
    },
    resources: everyDefault,
    bindJob: true,
    level: 'baseline',
  },
  {
    name: 'no bind Job',
    values: { ...base, storage: { bindJob: { enabled: false } } },
    resources: everyDefault,
    level: 'baseline',
  },
];

/** A set by name (throws on a typo, so tests never silently check nothing). */
export function overrideSet(name: string): OverrideSet {
  const set = OVERRIDE_SETS.find((s) => s.name === name);
  if (!set) throw new Error(`no override set "${name}"`);
  return set;
}
