import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import { HelmPlaceholders } from '../helm.js';
import { V } from '../values.js';
import { resourceMetadata } from './runner-pod.js';

/**
 * What the restore Job may do to stop the application (restore.scaleDown): get and patch the
 * scale subresource of only the named Deployments and StatefulSets (resourceNames), and list
 * pods to see them go; nothing cluster-wide, nothing on the workloads themselves. The rules are
 * those of scaleDownRbacRules() in runner/consistency/scale-down.ts (a test compares them).
 */
export class ScaleDownRole extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const role = new ApiObject(this, 'Role', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: helm.field(V.names.scaleDownRole) },
      rules: helm.field(V.restore.scaleDownRules),
    });
    const binding = new ApiObject(this, 'RoleBinding', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: helm.field(V.names.scaleDownRole) },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: helm.field(V.names.scaleDownRole) },
      subjects: [{ kind: 'ServiceAccount', name: helm.field(V.names.serviceAccount), namespace: helm.field(V.namespace) }],
    });
    for (const object of [role, binding]) resourceMetadata(object, V.labels('restore'));
  }
}
