import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields, TemplateFile } from '../helm.js';
import { V } from '../values.js';
import { underSources } from './sources.js';
import { bucketArgs, identityArgs, templateBucketEnv } from './offsite.js';
import { backupMount, identityMount, MOUNT_PATHS, runnerContainer, templateRunnerPod } from './runner-pod.js';

/**
 * `helm test`: a hook Pod that fully verifies the newest archive (`pvc-backup verify --latest`),
 * with the verify pods' settings and only the backup volume. It fails until the first backup
 * exists, and whenever the newest archive is damaged. Kept after it ran (for its log) until the
 * next `helm test` replaces it. With `sources` it verifies the first source's newest archive. In a bucket-only install it verifies the newest archive in the bucket.
 */
export class TestPod extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const pod = new kplus.Pod(this, 'Resource', {
      metadata: { name: helm.field(V.names.testPod) },
      serviceAccount: kplus.ServiceAccount.fromServiceAccountName(this, 'ServiceAccount', helm.field(V.names.serviceAccount)),
      automountServiceAccountToken: false,
      restartPolicy: kplus.RestartPolicy.NEVER,
      containers: [
        runnerContainer(this, {
          name: 'test',
          args: [
            'verify',
            helm.argsWhen(V.storage.enabled, ['--dest', MOUNT_PATHS.backup]),
            helm.argsWhen(V.offsite.only, bucketArgs(helm, false)),
            '--prefix',
            helm.arg(V.backup.prefix),
            '--latest',
            ...identityArgs(helm),
          ],
          mounts: [backupMount(this), identityMount(this)],
        }),
      ],
    });
    // A Pod is its own pod template: its labels and annotations are the pod ones (hook included).
    setFields(ApiObject.of(pod), { '/metadata/namespace': helm.field(V.namespace) });
    templateRunnerPod(ApiObject.of(pod), '', { pod: 'test', colocate: false, reports: false, annotations: V.test.annotations });
    underSources(TemplateFile.ofConstruct(this), 'first');
    templateBucketEnv(ApiObject.of(pod), '/spec/containers/0', V.offsite.only);
  }
}
