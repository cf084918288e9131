import type { ValueTypes, Values } from './generated/values.js';
import type { HelmValue } from './helm.js';

/**
 * The one table from chart values to Helm expressions. Constructs refer to entries of `V` only,
 * never to `.Values` text, so every way a value reaches a manifest is listed here. Value paths
 * are type-checked against the type generated from values.schema.json: `integer('backup.keepLast')`
 * compiles only while the schema says keepLast is an integer.
 */

export type { Values, ValueTypes };

/** The runner components; also their app.kubernetes.io/component label. */
export type Component = 'backup' | 'verify' | 'restore';

/**
 * Every pod the chart renders, and the component whose settings (resources, scheduling,
 * capabilities, security context) it uses: the bind Job runs with the backup pods' settings,
 * the helm test Pod with verify's.
 */
export const POD_COMPONENT = { backup: 'backup', verify: 'verify', restore: 'restore', bind: 'backup', test: 'verify' } as const;
export type PodKind = keyof typeof POD_COMPONENT;

type PathOf<T> = { [P in keyof ValueTypes]: [ValueTypes[P]] extends [T] ? P : never }[keyof ValueTypes];

const string = (path: PathOf<string>): HelmValue => ({ kind: 'string', expr: `.Values.${path}` });
const integer = (path: PathOf<number>): HelmValue => ({ kind: 'integer', expr: `.Values.${path}` });
const boolean = (path: PathOf<boolean>): HelmValue => ({ kind: 'boolean', expr: `.Values.${path}` });
const optionalInteger = (path: PathOf<number | null>): HelmValue => ({ kind: 'optionalInteger', expr: `.Values.${path}` });
const nonEmptyString = (path: PathOf<string>): HelmValue => ({ kind: 'nonEmptyString', expr: `.Values.${path}` });
const yaml = (path: PathOf<unknown[] | Record<string, unknown>>): HelmValue => ({ kind: 'yaml', expr: `.Values.${path}` });

/** A helper from templates/_helpers.tpl that returns one string. */
const helper = (name: string, kind: 'string' | 'nonEmptyString' | 'nonEmptyScalar' = 'string'): HelmValue => ({ kind, expr: `include "pvc-backup.${name}" .` });
/** A helper that returns YAML (a map, or with `list` a list), given extra arguments beside the root context. */
const yamlHelper = (name: string, args: Record<string, string> = {}, shape: 'map' | 'list' = 'map'): HelmValue => ({
  kind: 'yaml',
  expr: `(include "pvc-backup.${name}" (dict "context" .${Object.entries(args)
    .map(([k, v]) => ` "${k}" ${v}`)
    .join('')}) | ${shape === 'list' ? 'fromYamlArray' : 'fromYaml'})`,
});
/** A Helm expression over several values (kept here so that all value logic stays in this table). */
const derived = (kind: HelmValue['kind'], expr: string): HelmValue => ({ kind, expr });

type ComponentSetting = 'resources' | 'nodeSelector' | 'tolerations';
/** A component's own setting, or the shared one while the component's is null. */
const componentSetting = (component: Component, key: ComponentSetting): HelmValue =>
  derived('yaml', `(ternary .Values.${key} .Values.${component}.${key} (kindIs "invalid" .Values.${component}.${key}))`);

export const V = {
  names: {
    backupCronJob: helper('backupCronJobName'),
    verifyCronJob: helper('verifyCronJobName'),
    restoreJob: helper('restoreJobName'),
    bindJob: helper('bindJobName'),
    testPod: helper('testPodName'),
    backupClaim: helper('backupClaimName'),
    serviceAccount: helper('serviceAccountName'),
    /** The events Role and RoleBinding, and the PrometheusRule. */
    monitoring: helper('fullname'),
    /** The Role and RoleBinding of restore.scaleDown. */
    scaleDownRole: helper('scaleDownRoleName'),
  },
  namespace: helper('namespace'),
  labels: (component?: Component | 'storage' | 'bind' | 'test') => yamlHelper('labels', component ? { component: `"${component}"` } : {}),
  /** commonAnnotations (resources that have no annotations of their own). */
  annotations: yamlHelper('annotations'),
  pod: {
    labels: (pod: PodKind) => yamlHelper('podLabels', { component: `"${pod}"` }),
    annotations: yaml('podAnnotations'),
    imagePullSecrets: yamlHelper('imagePullSecrets', {}, 'list'),
    securityContext: (pod: PodKind) => yamlHelper('podSecurityContext', { component: `"${POD_COMPONENT[pod]}"` }),
    nodeSelector: (pod: PodKind) => componentSetting(POD_COMPONENT[pod], 'nodeSelector'),
    tolerations: (pod: PodKind) => componentSetting(POD_COMPONENT[pod], 'tolerations'),
    /** The component's affinity, plus the podAffinity term of source.colocateWith when `colocate`. */
    affinity: (pod: PodKind, colocate: boolean) => yamlHelper('affinity', { component: `"${POD_COMPONENT[pod]}"`, colocate: String(colocate) }),
    priorityClassName: nonEmptyString('priorityClassName'),
    runtimeClassName: nonEmptyString('runtimeClassName'),
    terminationGracePeriodSeconds: optionalInteger('terminationGracePeriodSeconds'),
    extraVolumes: yaml('extraVolumes'),
  },
  container: {
    image: helper('image'),
    imagePullPolicy: string('image.pullPolicy'),
    resources: (pod: PodKind) => componentSetting(POD_COMPONENT[pod], 'resources'),
    extraEnv: yaml('extraEnv'),
    extraEnvFrom: yaml('extraEnvFrom'),
    extraVolumeMounts: yaml('extraVolumeMounts'),
    securityContext: (pod: PodKind) => yamlHelper('containerSecurityContext', { component: `"${POD_COMPONENT[pod]}"` }),
  },
  source: {
    claimName: string('source.claimName'),
    subPath: nonEmptyString('source.subPath'),
    /** Without a source claim (only backup.preBackup dumps are backed up) no pod mounts a source. */
    given: derived('boolean', '(not (empty .Values.source.claimName))'),
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
    preBackup: yaml('backup.preBackup'),
    hasDumps: derived('boolean', '(not (empty .Values.backup.preBackup))'),
    sqlite: yaml('backup.sqlite'),
  },
  storage: {
    /** The archives live on the backup claim; false is a bucket-only install. */
    enabled: boolean('storage.enabled'),
    size: string('storage.size'),
    /** storage.storageClassName, else global.storageClass; left out when neither names one. */
    storageClassName: helper('storageClassName', 'nonEmptyScalar'),
    accessModes: yaml('storage.accessModes'),
    annotations: yamlHelper('backupClaimAnnotations'),
    bindActiveDeadlineSeconds: integer('storage.bindJob.activeDeadlineSeconds'),
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
    /** restore.from, resolved: the archive comes from the bucket. */
    fromOffsite: derived('boolean', '(eq (include "pvc-backup.restoreFrom" .) "offsite")'),
    allowUnverified: boolean('restore.allowUnverified'),
    allowAbsoluteSymlinks: boolean('restore.allowAbsoluteSymlinks'),
    backoffLimit: integer('restore.backoffLimit'),
    activeDeadlineSeconds: optionalInteger('restore.activeDeadlineSeconds'),
    annotations: yamlHelper('restoreAnnotations'),
    scaleDown: yaml('restore.scaleDown'),
    scalesDown: derived('boolean', '(not (empty .Values.restore.scaleDown))'),
    scaleDownTimeout: string('restore.scaleDownTimeout'),
    scaleDownRules: yamlHelper('scaleDownRules', {}, 'list'),
    paths: yaml('restore.paths'),
    /** restore.paths is empty: the whole archive, in restore.mode. */
    whole: derived('boolean', '(empty .Values.restore.paths)'),
  },
  offsite: {
    enabled: boolean('offsite.enabled'),
    url: string('offsite.url'),
    endpoint: nonEmptyString('offsite.endpoint'),
    region: nonEmptyString('offsite.region'),
    /** pathStyle true and false are explicit flags; null leaves the choice to the runner (on with an endpoint). */
    pathStyleOn: derived('boolean', '(eq (toString .Values.offsite.pathStyle) "true")'),
    pathStyleOff: derived('boolean', '(eq (toString .Values.offsite.pathStyle) "false")'),
    /** offsite.keepLast, else what the backup volume keeps. */
    keepLast: derived('integer', '(.Values.offsite.keepLast | default (.Values.backup.keep.last | default .Values.backup.keepLast))'),
    storageClass: nonEmptyString('offsite.storageClass'),
    sse: nonEmptyString('offsite.sse'),
    sseKmsKeyId: nonEmptyString('offsite.sseKmsKeyId'),
    maxParts: optionalInteger('offsite.maxParts'),
    /** Backups are copied to the bucket after they are proven on the backup volume. */
    besideVolume: derived('boolean', '(and .Values.offsite.enabled .Values.storage.enabled)'),
    /** The bucket is the only place of the archives (the render fails unless offsite.enabled). */
    only: derived('boolean', '(not .Values.storage.enabled)'),
    /** The credentials' variables from offsite.existingSecret, in a container that talks to the bucket while `when` (a Helm condition) holds. */
    env: (when: string) => yamlHelper('offsiteEnv', { when }, 'list'),
  },
  encryption: {
    recipients: yaml('encryption.recipients'),
    hasIdentity: derived('boolean', '(not (empty .Values.encryption.existingSecret))'),
    secretName: string('encryption.existingSecret'),
    identityKey: string('encryption.identityKey'),
    /** The identity file's mode in this pod (see pvc-backup.identityFileMode). */
    fileMode: (pod: PodKind) => derived('integer', `(include "pvc-backup.identityFileMode" (dict "context" . "component" "${POD_COMPONENT[pod]}") | int)`),
  },
  serviceAccount: {
    annotations: yamlHelper('serviceAccountAnnotations'),
  },
  test: {
    annotations: yamlHelper('testPodAnnotations'),
  },
  monitoring: {
    /** The runner needs the namespace for the metrics' label and for the Events (and a restore for scaling down). */
    needsNamespace: (component: Component) =>
      derived('boolean', component === 'restore' ? '(or .Values.metrics.pushgateway.url .Values.events.enabled .Values.restore.scaleDown)' : '(or .Values.metrics.pushgateway.url .Values.events.enabled)'),
    /** The ServiceAccount token is mounted for Events, and in the restore pod for scaling down. */
    mountsToken: (component: Component) => (component === 'restore' ? derived('boolean', '(or .Values.events.enabled (not (empty .Values.restore.scaleDown)))') : boolean('events.enabled')),
    /** The claim a pod's Events are about: the one it reads (backup, verify) or writes (restore). */
    claimName: (component: Component) => (component === 'restore' ? helper('restoreTargetClaim') : helper('eventsClaimName')),
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
  backupClaim: 'and .Values.storage.enabled .Values.storage.create (not .Values.storage.existingClaim)',
  serviceAccount: '.Values.serviceAccount.create',
  eventsRole: 'and .Values.events.enabled (or .Values.backup.enabled .Values.verify.enabled .Values.restore.enabled)',
  prometheusRule: '.Values.metrics.prometheusRule.enabled',
  /** The chart creates the backup claim, so a WaitForFirstConsumer class needs a consumer at install. */
  bindJob: 'and .Values.storage.enabled .Values.storage.bindJob.enabled .Values.storage.create (not .Values.storage.existingClaim)',
  testPod: '.Values.tests.enabled',
  scaleDownRole: 'and .Values.restore.enabled .Values.restore.scaleDown',
} as const;
