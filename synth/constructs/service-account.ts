import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { HelmPlaceholders } from '../helm.js';
import { V } from '../values.js';
import { resourceMetadata } from './runner-pod.js';

/** The pods' identity. Its token is not mounted by default; pods mount it only to post Events (synth/constructs/monitoring.ts). */
export class RunnerServiceAccount extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const serviceAccount = new kplus.ServiceAccount(this, 'Resource', {
      metadata: { name: helm.field(V.names.serviceAccount) },
      automountToken: false,
    });
    resourceMetadata(ApiObject.of(serviceAccount), V.labels(), V.serviceAccount.annotations);
  }
}
