import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import { HelmPlaceholders, type HelmValue } from '../helm.js';
import { type Component, V } from '../values.js';
import { resourceMetadata } from './runner-pod.js';

export interface ServiceAccountRoleProps {
  /** The Role's and the RoleBinding's name. */
  name: HelmValue;
  /** The Role's rules, as written or from values. */
  rules: unknown;
  /** The component whose labels they carry (every component's when undefined). */
  component?: Component;
}

/** A Role in the release namespace and its binding to the chart's ServiceAccount: nothing cluster-wide. */
export class ServiceAccountRole extends Construct {
  constructor(scope: Construct, id: string, props: ServiceAccountRoleProps) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const name = helm.field(props.name);
    const role = new ApiObject(this, 'Role', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name }, rules: props.rules });
    const binding = new ApiObject(this, 'RoleBinding', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name: helm.field(V.names.serviceAccount), namespace: helm.field(V.namespace) }],
    });
    for (const object of [role, binding]) resourceMetadata(object, V.labels(props.component));
  }
}
