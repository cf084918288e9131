import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields, TemplateFile } from '../helm.js';
import { V } from '../values.js';
import { underSources } from './sources.js';
import { backupMount, MOUNT_PATHS, resourceMetadata, runnerContainer, templateRunnerPod, templateSourceMount } from './runner-pod.js';

/**
 * The first consumer of a new backup claim. With a WaitForFirstConsumer storage class (the
 * default on GKE, EKS, AKS, k3s) a claim is provisioned only when a pod that uses it is
 * scheduled, and Helm's --wait counts a claim ready only when Bound; the backup CronJob's first
 * pod comes at the first scheduled run. This Job is part of the release (a hook would run only
 * after the wait), so its pod is created at install: it mounts the backup claim and, read-only,
 * the source claim, with the backup pods' node selector, tolerations and affinity (colocation
 * included), so the volume is provisioned in a zone and on a node where backups can run. Its
 * container runs `pvc-backup list`, which also proves the image pulls and starts.
 *
 * With `sources`, the pod mounts (and colocates with) the first source.
 *
 * The name ends in a hash of the values: a Job's pod template is immutable, so an upgrade that
 * changes anything replaces the Job instead of failing to patch it.
 */
export class BindJob extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const job = new kplus.Job(this, 'Resource', {
      metadata: { name: helm.field(V.names.bindJob) },
      serviceAccount: kplus.ServiceAccount.fromServiceAccountName(this, 'ServiceAccount', helm.field(V.names.serviceAccount)),
      automountServiceAccountToken: false,
      containers: [
        runnerContainer(this, {
          name: 'bind',
          args: bindArgs(helm),
          mounts: [backupMount(this)],
        }),
      ],
    });
    resourceMetadata(ApiObject.of(job), V.labels('bind'));
    setFields(ApiObject.of(job), {
      '/spec/backoffLimit': 1,
      '/spec/activeDeadlineSeconds': helm.field(V.storage.bindActiveDeadlineSeconds),
    });
    templateSourceMount(ApiObject.of(job), '/spec/template');
    templateRunnerPod(ApiObject.of(job), '/spec/template', { pod: 'bind', colocate: true, reports: false });
    underSources(TemplateFile.ofConstruct(this), 'first');
  }
}

function bindArgs(helm: HelmPlaceholders): string[] {
  return ['list', '--dest', MOUNT_PATHS.backup, '--prefix', helm.arg(V.backup.prefix)];
}
