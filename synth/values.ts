import type { ValueTypes, Values } from './generated/values.js';
import type { HelmValue } from './helm.js';

/**
 * The one table from chart values to Helm expressions. Constructs refer to entries of `V` only,
 * never to `.Values` text, so every way a value reaches a manifest is listed here. Value paths
 * are type-checked against the type generated from values.schema.json: `integer('backup.keepLast')`
 * compiles only while the schema says keepLast is an integer.
 */

export type { Values, ValueTypes };

/** The pods the chart runs; also their app.kubernetes.io/component label. */
export type Component = 'backup' | 'verify' | 'restore';

type PathOf<T> = { [P in keyof ValueTypes]: [ValueTypes[P]] extends [T] ? P : never }[keyof ValueTypes];

const string = (path: PathOf<string>): HelmValue => ({ kind: 'string', expr: `.Values.${path}` });
const integer = (path: PathOf<number>): HelmValue => ({ kind: 'integer', expr: `.Values.${path}` });
const boolean = (path: PathOf<boolean>): HelmValue => ({ kind: 'boolean', expr: `.Values.${path}` });
const optionalInteger = (path: PathOf<number | null>): HelmValue => ({ kind: 'optionalInteger', expr: `.Values.${path}` });
const optionalString = (path: PathOf<string | null>): HelmValue => ({ kind: 'optionalString', expr: `.Values.${path}` });
const nonEmptyString = (path: PathOf<string>): HelmValue => ({ kind: 'nonEmptyString', expr: `.Values.${path}` });
const yaml = (path: PathOf<unknown[] | Record<string, unknown>>): HelmValue => ({ kind: 'yaml', expr: `.Values.${path}` });

/** A helper from templates/_helpers.tpl that returns one string. */
const helper = (name: string, kind: 'string' | 'nonEmptyString' = 'string'): HelmValue => ({ kind, expr: `include "pvc-backup.${name}" .` });
/** A helper that returns YAML, given extra arguments beside the root context. */
const yamlHelper = (name: string, args: Record<string, string> = {}): HelmValue => ({
  kind: 'yaml',
  expr: `(include "pvc-backup.${name}" (dict "context" .${Object.entries(args)
    .map(([k, v]) => ` "${k}" ${v}`)
    .join('')}) | fromYaml)`,
});
/** A Helm expression over several values (kept here so that all value logic stays in this table). */
const derived = (kind: HelmValue['kind'], expr: string): HelmValue => ({ kind, expr });

export const V = {
  names: {
    backupCronJob: helper('backupCronJobName'),
    verifyCronJob: helper('verifyCronJobName'),
    restoreJob: helper('restoreJobName'),
    backupClaim: helper('backupClaimName'),
    serviceAccount: helper('serviceAccountName'),
    /** The events Role and RoleBinding, and the PrometheusRule. */
    monitoring: helper('fullname'),
  },
  labels: (component?: Component | 'storage') => yamlHelper('labels', component ? { component: `"${component}"` } : {}),
  pod: {
    labels: (component: Component) => yamlHelper('podLabels', { component: `"${component}"` }),
    annotations: yaml('podAnnotations'),
    imagePullSecrets: yaml('imagePullSecrets'),
    securityContext: yaml('podSecurityContext'),
    nodeSelector: yaml('nodeSelector'),
    tolerations: yaml('tolerations'),
    /** `affinity`, plus the podAffinity term of source.colocateWith when `colocate`. */
    affinity: (colocate: boolean) => yamlHelper('affinity', { colocate: String(colocate) }),
  },
  container: {
    image: helper('image'),
    imagePullPolicy: string('image.pullPolicy'),
    resources: yaml('resources'),
    extraEnv: yaml('extraEnv'),
    securityContext: (component: Component) => yamlHelper('containerSecurityContext', { add: `.Values.${component}.addCapabilities` }),
  },
  source: {
    claimName: string('source.claimName'),
    subPath: nonEmptyString('source.subPath'),
  },
  backup: {
    schedule: string('backup.schedule'),
    timeZone: string('backup.timeZone'),
    suspend: boolean('backup.suspend'),
    concurrencyPolicy: string('backup.concurrencyPolicy'),
    startingDeadlineSeconds: optionalInteger('backup.startingDeadlineSeconds'),
    successfulJobsHistoryLimit: integer('backup.successfulJobsHistoryLimit'),
    failedJobsHistoryLimit: integer('backup.failedJobsHistoryLimit'),
    backoffLimit: integer('backup.backoffLimit'),
    activeDeadlineSeconds: optionalInteger('backup.activeDeadlineSeconds'),
    ttlSecondsAfterFinished: optionalInteger('backup.ttlSecondsAfterFinished'),
    prefix: helper('prefix'),
    compression: string('backup.compression'),
    level: optionalInteger('backup.level'),
    /** backup.keep.last when set, else backup.keepLast. */
    keepLast: derived('integer', '(.Values.backup.keep.last | default .Values.backup.keepLast)'),
    keepHourly: optionalInteger('backup.keep.hourly'),
    keepDaily: optionalInteger('backup.keep.daily'),
    keepWeekly: optionalInteger('backup.keep.weekly'),
    keepMonthly: optionalInteger('backup.keep.monthly'),
    keepYearly: optionalInteger('backup.keep.yearly'),
    exclude: yaml('backup.exclude'),
    allowEmpty: boolean('backup.allowEmpty'),
    skipUnreadable: boolean('backup.skipUnreadable'),
  },
  storage: {
    size: string('storage.size'),
    storageClassName: optionalString('storage.storageClassName'),
    accessModes: yaml('storage.accessModes'),
    annotations: yamlHelper('backupClaimAnnotations'),
  },
  verify: {
    /** Without a schedule of its own the check runs on the backup schedule; suspended, it still needs a valid one. */
    schedule: derived('string', '(.Values.verify.schedule | default .Values.backup.schedule)'),
    /** Suspended only with no schedule of its own while backups are not scheduled either. */
    suspend: derived('boolean', '(and (empty .Values.verify.schedule) (not (and .Values.backup.enabled (not .Values.backup.suspend))))'),
    startingDeadlineSeconds: optionalInteger('verify.startingDeadlineSeconds'),
    successfulJobsHistoryLimit: integer('verify.successfulJobsHistoryLimit'),
    failedJobsHistoryLimit: integer('verify.failedJobsHistoryLimit'),
    backoffLimit: integer('verify.backoffLimit'),
    activeDeadlineSeconds: optionalInteger('verify.activeDeadlineSeconds'),
    /** Freshness is checked only while backups are actually scheduled. */
    checkFreshness: derived('boolean', '(and .Values.backup.enabled (not .Values.backup.suspend))'),
    grace: string('verify.grace'),
  },
  restore: {
    archive: string('restore.archive'),
    mode: string('restore.mode'),
    targetClaim: helper('restoreTargetClaim'),
    targetSubPath: helper('restoreTargetSubPath', 'nonEmptyString'),
    requestId: helper('restoreRequestId'),
    noSnapshot: derived('boolean', '(not .Values.restore.snapshot)'),
    allowUnverified: boolean('restore.allowUnverified'),
    allowAbsoluteSymlinks: boolean('restore.allowAbsoluteSymlinks'),
    backoffLimit: integer('restore.backoffLimit'),
    activeDeadlineSeconds: optionalInteger('restore.activeDeadlineSeconds'),
    annotations: yamlHelper('restoreAnnotations'),
  },
  serviceAccount: {
    annotations: yaml('serviceAccount.annotations'),
  },
  monitoring: {
    namespace: derived('string', '.Release.Namespace'),
    /** The runner needs the namespace for the metrics' label and for the Events. */
    needsNamespace: derived('boolean', '(or .Values.metrics.pushgateway.url .Values.events.enabled)'),
    /** The claim a pod's Events are about: the one it reads (backup, verify) or writes (restore). */
    claimName: (component: Component) => (component === 'restore' ? helper('restoreTargetClaim') : string('source.claimName')),
  },
  metrics: {
    pushgatewayUrl: nonEmptyString('metrics.pushgateway.url'),
    pushes: derived('boolean', '(not (empty .Values.metrics.pushgateway.url))'),
    ruleLabels: yamlHelper('prometheusRuleLabels'),
    /** The alerts, written out in templates/_monitoring.tpl. */
    ruleSpec: yamlHelper('prometheusRuleSpec'),
  },
  events: {
    enabled: boolean('events.enabled'),
  },
  notify: {
    /** The PVC_BACKUP_NOTIFY_URL variable from the Secret, when one is named. */
    urlsEnv: derived('yaml', '(include "pvc-backup.notifyUrlsEnv" . | fromYamlArray)'),
    configured: derived('boolean', '(not (empty .Values.notify.urls.existingSecret))'),
    on: string('notify.on'),
    pingUrl: nonEmptyString('notify.pingUrl'),
  },
} as const;

/** Conditions that decide whether a whole template file is rendered. */
export const RENDER_WHEN = {
  backupCronJob: '.Values.backup.enabled',
  verifyCronJob: '.Values.verify.enabled',
  restoreJob: '.Values.restore.enabled',
  backupClaim: 'and .Values.storage.create (not .Values.storage.existingClaim)',
  serviceAccount: '.Values.serviceAccount.create',
  eventsRole: 'and .Values.events.enabled (or .Values.backup.enabled .Values.verify.enabled .Values.restore.enabled)',
  prometheusRule: '.Values.metrics.prometheusRule.enabled',
} as const;
