import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields, TemplateFile, toYamlLines } from '../helm.js';
import { V } from '../values.js';
import { backupMount, MOUNT_PATHS, resourceMetadata, runnerContainer, targetMount, templateRunnerPod } from './runner-pod.js';

/**
 * One restore request. The Job name carries the request id (a hash of archive, mode, target and
 * nonce), so a changed request is a new Job and an unchanged one is the same Job:
 *
 * - A Job's pod template is immutable. When the Job already exists (Helm `lookup`), the template
 *   re-emits the live spec unchanged, so `helm upgrade` with other changed values (image tag,
 *   resources) neither fails nor restarts the restore. `lookup` is empty under `helm template`.
 * - No ttlSecondsAfterFinished: Helm would recreate a Job deleted by its TTL on the next upgrade.
 *   Even then the runner would exit at once: it records finished request ids in the backup volume.
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
          mounts: [targetMount(this), backupMount(this)],
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
    templateRunnerPod(ApiObject.of(job), '/spec/template', { pod: 'restore', colocate: false });

    const file = TemplateFile.ofConstruct(this);
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
    '--dest',
    MOUNT_PATHS.backup,
    '--prefix',
    helm.arg(V.backup.prefix),
    '--archive',
    helm.arg(restore.archive),
    '--target',
    MOUNT_PATHS.target,
    '--mode',
    helm.arg(restore.mode),
    '--request-id',
    helm.arg(restore.requestId),
    helm.switchArg('--no-snapshot', restore.noSnapshot),
    helm.switchArg('--allow-unverified', restore.allowUnverified),
  ];
}
