import { ApiObject, Cron } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields, TemplateFile } from '../helm.js';
import { V } from '../values.js';
import { monitoringArgs } from './monitoring.js';
import { DUMPS_MOUNT_PATH } from '../../runner/consistency/dumps.js';
import { templateDumps } from './dumps.js';
import { underSources } from './sources.js';
import { bucketArgs, recipientArgs, templateBucketEnv } from './offsite.js';
import { backupMount, MOUNT_PATHS, resourceMetadata, runnerContainer, templateRunnerPod, templateSourceMount } from './runner-pod.js';

/** The scheduled backup: `pvc-backup backup` with every setting spelled out as a flag; one CronJob per source of `sources`. */
export class BackupCronJob extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const cronJob = new kplus.CronJob(this, 'Resource', {
      metadata: { name: helm.field(V.names.backupCronJob) },
      // Every scheduling field is set from values below; cdk8s-plus defaults (such as a 10 s
      // startingDeadline) must not leak into the chart.
      schedule: Cron.daily(),
      serviceAccount: kplus.ServiceAccount.fromServiceAccountName(this, 'ServiceAccount', helm.field(V.names.serviceAccount)),
      automountServiceAccountToken: false,
      containers: [
        runnerContainer(this, {
          name: 'backup',
          args: backupArgs(helm),
          mounts: [backupMount(this)],
        }),
      ],
    });
    const backup = V.backup;
    resourceMetadata(ApiObject.of(cronJob), V.labels('backup'));
    setFields(ApiObject.of(cronJob), {
      '/spec/schedule': helm.field(backup.schedule),
      '/spec/timeZone': helm.field(backup.timeZone),
      '/spec/suspend': helm.field(backup.suspend),
      '/spec/concurrencyPolicy': helm.field(backup.concurrencyPolicy),
      '/spec/startingDeadlineSeconds': helm.field(backup.startingDeadlineSeconds),
      '/spec/successfulJobsHistoryLimit': helm.field(backup.successfulJobsHistoryLimit),
      '/spec/failedJobsHistoryLimit': helm.field(backup.failedJobsHistoryLimit),
      '/spec/jobTemplate/metadata': { labels: helm.field(V.labels('backup')) },
      '/spec/jobTemplate/spec/backoffLimit': helm.field(backup.backoffLimit),
      '/spec/jobTemplate/spec/activeDeadlineSeconds': helm.field(backup.activeDeadlineSeconds),
      '/spec/jobTemplate/spec/ttlSecondsAfterFinished': helm.field(backup.ttlSecondsAfterFinished),
    });
    const podTemplate = '/spec/jobTemplate/spec/template';
    templateSourceMount(ApiObject.of(cronJob), podTemplate);
    templateDumps(ApiObject.of(cronJob), podTemplate);
    templateRunnerPod(ApiObject.of(cronJob), podTemplate, { pod: 'backup', colocate: true, reports: true });
    templateBucketEnv(ApiObject.of(cronJob), `${podTemplate}/spec/containers/0`, V.offsite.enabled);
    underSources(TemplateFile.ofConstruct(this), 'each');
  }
}

function backupArgs(helm: HelmPlaceholders): string[] {
  const backup = V.backup;
  return [
    'backup',
    helm.argsWhen(V.source.given, ['--source', MOUNT_PATHS.source]),
    // Into the backup volume, then a copy into the bucket; or (storage.enabled=false) straight into the bucket.
    helm.argsWhen(V.storage.enabled, ['--dest', MOUNT_PATHS.backup]),
    helm.argsWhen(V.offsite.enabled, [...bucketArgs(helm, true), '--remote-keep-last', helm.arg(V.offsite.keepLast)]),
    '--prefix',
    helm.arg(backup.prefix),
    ...recipientArgs(helm),
    '--compression',
    helm.arg(backup.compression),
    helm.optionalArg('--level', backup.level),
    '--keep-last',
    helm.arg(backup.keepLast),
    helm.optionalArg('--keep-hourly', backup.keepHourly),
    helm.optionalArg('--keep-daily', backup.keepDaily),
    helm.optionalArg('--keep-weekly', backup.keepWeekly),
    helm.optionalArg('--keep-monthly', backup.keepMonthly),
    helm.optionalArg('--keep-yearly', backup.keepYearly),
    helm.repeatedArg('--exclude', backup.exclude),
    helm.switchArg('--allow-empty', backup.allowEmpty),
    helm.switchArg('--skip-unreadable', backup.skipUnreadable),
    helm.repeatedArg('--sqlite', backup.sqlite),
    helm.argsWhen(backup.hasDumps, ['--dumps-dir', DUMPS_MOUNT_PATH]),
    helm.repeatedArg('--dump', backup.preBackup, '.name'),
    ...monitoringArgs(helm, 'backup'),
  ];
}
