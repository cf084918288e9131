import { ApiObject, Cron } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields } from '../helm.js';
import { V } from '../values.js';
import { monitoringArgs } from './monitoring.js';
import { backupMount, MOUNT_PATHS, resourceMetadata, runnerContainer, templateRunnerPod } from './runner-pod.js';

/**
 * The integrity check: `pvc-backup verify --all`, plus the freshness check against the backup
 * schedule. It runs on verify.schedule, or on the backup schedule while backups are scheduled;
 * otherwise it is suspended and serves as the template for `kubectl create job --from=cronjob/F-verify`.
 * It mounts only the backup volume: it never reads the source, so it neither waits for the
 * application's node nor fails when the source is gone.
 */
export class VerifyCronJob extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const cronJob = new kplus.CronJob(this, 'Resource', {
      metadata: { name: helm.field(V.names.verifyCronJob) },
      schedule: Cron.daily(),
      serviceAccount: kplus.ServiceAccount.fromServiceAccountName(this, 'ServiceAccount', helm.field(V.names.serviceAccount)),
      automountServiceAccountToken: false,
      containers: [
        runnerContainer(this, {
          name: 'verify',
          args: verifyArgs(helm),
          mounts: [backupMount(this)],
        }),
      ],
    });
    const verify = V.verify;
    resourceMetadata(ApiObject.of(cronJob), V.labels('verify'));
    setFields(ApiObject.of(cronJob), {
      '/spec/schedule': helm.field(verify.schedule),
      '/spec/timeZone': helm.field(V.backup.timeZone),
      '/spec/suspend': helm.field(verify.suspend),
      '/spec/concurrencyPolicy': 'Forbid',
      '/spec/startingDeadlineSeconds': helm.field(verify.startingDeadlineSeconds),
      '/spec/successfulJobsHistoryLimit': helm.field(verify.successfulJobsHistoryLimit),
      '/spec/failedJobsHistoryLimit': helm.field(verify.failedJobsHistoryLimit),
      '/spec/jobTemplate/metadata': { labels: helm.field(V.labels('verify')) },
      '/spec/jobTemplate/spec/backoffLimit': helm.field(verify.backoffLimit),
      '/spec/jobTemplate/spec/activeDeadlineSeconds': helm.field(verify.activeDeadlineSeconds),
    });
    templateRunnerPod(ApiObject.of(cronJob), '/spec/jobTemplate/spec/template', { pod: 'verify', colocate: false, reports: true });
  }
}

function verifyArgs(helm: HelmPlaceholders): string[] {
  return [
    'verify',
    '--dest',
    MOUNT_PATHS.backup,
    '--prefix',
    helm.arg(V.backup.prefix),
    '--all',
    // Restorable means restorable by this chart's restore Job.
    helm.switchArg('--allow-absolute-symlinks', V.restore.allowAbsoluteSymlinks),
    helm.argsWhen(V.verify.checkFreshness, [
      '--schedule',
      helm.arg(V.backup.schedule),
      '--time-zone',
      helm.arg(V.backup.timeZone),
      '--grace',
      helm.arg(V.verify.grace),
    ]),
    ...monitoringArgs(helm, 'verify'),
  ];
}
