import { ApiObject, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields } from '../helm.js';
import { V } from '../values.js';
import { resourceMetadata } from './runner-pod.js';

/** The claim holding the archives; annotated helm.sh/resource-policy: keep unless told otherwise. */
export class BackupClaim extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const claim = new kplus.PersistentVolumeClaim(this, 'Resource', {
      metadata: { name: helm.field(V.names.backupClaim) },
      storage: Size.gibibytes(5),
      accessModes: [kplus.PersistentVolumeAccessMode.READ_WRITE_ONCE],
      storageClassName: helm.field(V.storage.storageClassName),
      volumeMode: kplus.PersistentVolumeMode.FILE_SYSTEM,
    });
    resourceMetadata(ApiObject.of(claim), V.labels('storage'), V.storage.annotations);
    setFields(ApiObject.of(claim), {
      '/spec/resources/requests/storage': helm.field(V.storage.size),
      '/spec/accessModes': helm.field(V.storage.accessModes),
    });
  }
}
