import { ApiObject, Cron } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields, TemplateFile } from '../helm.js';
import { V } from '../values.js';
import { monitoringArgs } from './monitoring.js';
import { itemsPerEarlierSource, underSources } from './sources.js';
import { bucketArgs, identityArgs, templateBucketEnv } from './offsite.js';
import { backupMount, identityMount, MOUNT_PATHS, resourceMetadata, runnerContainer, templateRunnerPod } from './runner-pod.js';

/**
 * The integrity check: `pvc-backup verify --all`, plus the freshness check against the backup
 * schedule. It runs on verify.schedule, or on the backup schedule while backups are scheduled;
 * otherwise it is suspended and serves as the template for `kubectl create job --from=cronjob/F-verify`.
 * It mounts only the backup volume: it never reads the source, so it neither waits for the
 * application's node nor fails when the source is gone.
 *
 * With an off-site bucket beside the volume, an init container checks the bucket copies first
 * (`verify --remote … --all`), then the container checks the volume as without one. One Job
 * checks both, so `kubectl create job --from=cronjob/F-verify` and a failed Job as the alarm keep
 * meaning "everything"; the two checks run one after the other, so the pod needs one check's
 * memory, and each pushes its metrics (same group) only after the one before it succeeded — the
 * result left in the Pushgateway is never a success that hides a failed check of this run. In a
 * bucket-only install the container checks the bucket.
 */
/*
 * With `sources`, each source's prefix is checked against that source's schedule: the CronJob is
 * rendered under the last source, and every earlier one gets an init container (verify-NAME)
 * rendered under its own context, so the Job fails at the first source that fails. The runner's
 * verify stays one prefix, one schedule: a repeatable --prefix would need a schedule per prefix
 * for the freshness check, and its metrics are pushed per prefix already.
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
      initContainers: [
        runnerContainer(this, {
          name: 'verify-offsite',
          args: verifyArgs(helm, bucketArgs(helm, false)),
          mounts: [identityMount(this)],
        }),
      ],
      containers: [
        runnerContainer(this, {
          name: 'verify',
          args: verifyArgs(helm, [helm.argsWhen(V.storage.enabled, ['--dest', MOUNT_PATHS.backup]), helm.argsWhen(V.offsite.only, bucketArgs(helm, false))]),
          mounts: [backupMount(this), identityMount(this)],
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
    const pod = '/spec/jobTemplate/spec/template';
    templateRunnerPod(ApiObject.of(cronJob), pod, { pod: 'verify', colocate: false, reports: true, initContainerWhen: V.offsite.besideVolume });
    templateBucketEnv(ApiObject.of(cronJob), `${pod}/spec/initContainers/0`, V.offsite.enabled);
    templateBucketEnv(ApiObject.of(cronJob), `${pod}/spec/containers/0`, V.offsite.only);
    const file = TemplateFile.ofConstruct(this);
    underSources(file, 'last');
    file.addTransform((manifest) => {
      const spec = (manifest as any).spec.jobTemplate.spec.template.spec as { containers: Record<string, unknown>[]; initContainers?: unknown };
      spec.initContainers = itemsPerEarlierSource(helm, spec.initContainers, { ...spec.containers[0], name: helm.inline('{{ printf "verify-%s" .SourceName }}') });
      return manifest;
    });
  }
}

/** `verify` of every archive in `source` (the volume's or the bucket's flags). */
function verifyArgs(helm: HelmPlaceholders, source: string[]): string[] {
  return [
    'verify',
    ...source,
    '--prefix',
    helm.arg(V.backup.prefix),
    '--all',
    ...identityArgs(helm),
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
