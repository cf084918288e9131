import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import { HelmPlaceholders } from '../helm.js';
import { V } from '../values.js';
import { resourceMetadata } from './runner-pod.js';

/**
 * What the runner may do with the Kubernetes API: create Events (events.k8s.io), in the release
 * namespace, and nothing else: no get, no list, no other resource.
 */
export class EventsRole extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const role = new ApiObject(this, 'Role', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: helm.field(V.names.monitoring) },
      rules: [{ apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] }],
    });
    const binding = new ApiObject(this, 'RoleBinding', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: helm.field(V.names.monitoring) },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: helm.field(V.names.monitoring) },
      subjects: [{ kind: 'ServiceAccount', name: helm.field(V.names.serviceAccount), namespace: helm.field(V.namespace) }],
    });
    for (const object of [role, binding]) resourceMetadata(object, V.labels());
  }
}
