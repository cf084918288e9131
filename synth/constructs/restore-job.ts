import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields, TemplateFile, toYamlLines } from '../helm.js';
import { V } from '../values.js';
import { monitoringArgs } from './monitoring.js';
import { underSources } from './sources.js';
import { bucketArgs, identityArgs, templateBucketEnv } from './offsite.js';
import { backupMount, identityMount, MOUNT_PATHS, resourceMetadata, runnerContainer, targetMount, templateRunnerPod } from './runner-pod.js';

/** The label the Job controller puts on its pods (Kubernetes 1.27+): the Job's UID. */
export const JOB_UID_LABEL = 'batch.kubernetes.io/controller-uid';

/**
 * One restore request. The Job name carries the request id (a hash of archive, mode, target and
 * nonce), so a changed request is a new Job and an unchanged one is the same Job:
 *
 * - A Job's pod template is immutable. When the Job already exists (Helm `lookup`), the template
 *   re-emits the live spec unchanged, so `helm upgrade` with other changed values (image tag,
 *   resources) neither fails nor restarts the restore. `lookup` is empty under `helm template`.
 * - No ttlSecondsAfterFinished: Helm would recreate a Job deleted by its TTL on the next upgrade.
 * - The runner records a finished request id in the backup volume, with the UID of the Job that
 *   ran it (the pod's controller-uid label, through the downward API). A retry of that Job's pod
 *   exits 0; the same request from any other Job (recreated after deletion, the documented steps
 *   repeated later) fails with a line that says to set restore.nonce. So a request never ends as
 *   a success that restored nothing, and an unrelated upgrade never restores twice.
 */
export class RestoreJob extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const job = new kplus.Job(this, 'Resource', {
      metadata: { name: helm.field(V.names.restoreJob) },
      serviceAccount: kplus.ServiceAccount.fromServiceAccountName(this, 'ServiceAccount', helm.field(V.names.serviceAccount)),
      automountServiceAccountToken: false,
      containers: [
        runnerContainer(this, {
          name: 'restore',
          args: restoreArgs(helm),
          mounts: [targetMount(this), backupMount(this), identityMount(this)],
          env: { PVC_BACKUP_JOB_UID: kplus.EnvValue.fromFieldRef(kplus.EnvFieldPaths.POD_LABEL, { key: JOB_UID_LABEL }) },
        }),
      ],
    });
    const restore = V.restore;
    resourceMetadata(ApiObject.of(job), V.labels('restore'), restore.annotations);
    setFields(ApiObject.of(job), {
      '/spec/backoffLimit': helm.field(restore.backoffLimit),
      '/spec/activeDeadlineSeconds': helm.field(restore.activeDeadlineSeconds),
    });
    // The restore target is not the source mount: colocation with the (scaled-down) app would
    // leave the pod unschedulable.
    templateRunnerPod(ApiObject.of(job), '/spec/template', { pod: 'restore', colocate: false, reports: true });
    templateBucketEnv(ApiObject.of(job), '/spec/template/spec/containers/0', restore.fromOffsite);

    const file = TemplateFile.ofConstruct(this);
    // With sources: restore.source's prefix, and its claim as the default target.
    underSources(file, 'restore');
    file.addPreamble(`{{- $live := lookup "batch/v1" "Job" (${V.namespace.expr}) (${V.names.restoreJob.expr}) }}`);
    file.addTransform((manifest) => ({
      ...manifest,
      spec: helm.lines((at) => [
        '{{- if $live }}',
        `${at.key}:`,
        `  {{- toYaml $live.spec | nindent ${at.indent + 2} }}`,
        '{{- else }}',
        `${at.key}:`,
        ...toYamlLines(manifest.spec, 2),
        '{{- end }}',
      ]),
    }));
  }
}

function restoreArgs(helm: HelmPlaceholders): string[] {
  const restore = V.restore;
  return [
    'restore',
    // The backup volume holds the done marker and the pre-restore snapshot whenever there is one;
    // the archive comes from it or (restore.from=offsite) from the bucket.
    helm.argsWhen(V.storage.enabled, ['--dest', MOUNT_PATHS.backup]),
    helm.argsWhen(restore.fromOffsite, bucketArgs(helm, true)),
    '--prefix',
    helm.arg(V.backup.prefix),
    '--archive',
    helm.arg(restore.archive),
    '--target',
    MOUNT_PATHS.target,
    // A part of the archive (restore.paths) is always merged in: --mode is left to the runner's default then.
    helm.argsWhen(restore.whole, ['--mode', helm.arg(restore.mode)]),
    helm.repeatedArg('--path', restore.paths),
    '--request-id',
    helm.arg(restore.requestId),
    helm.switchArg('--no-snapshot', restore.noSnapshot),
    helm.switchArg('--allow-unverified', restore.allowUnverified),
    ...identityArgs(helm),
    ...monitoringArgs(helm, 'restore'),
    helm.switchArg('--allow-absolute-symlinks', restore.allowAbsoluteSymlinks),
    helm.repeatedArg('--scale-down', restore.scaleDown, 'printf "%s/%s" .kind .name'),
    helm.argsWhen(restore.scalesDown, ['--scale-down-timeout', helm.arg(restore.scaleDownTimeout)]),
  ];
}
