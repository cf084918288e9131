import type { Construct } from 'constructs';
import { HelmPlaceholders } from '../helm.js';
import { V } from '../values.js';
import { ServiceAccountRole } from './service-account-role.js';

/**
 * What the restore Job may do to stop the application (restore.scaleDown): get and patch the
 * scale subresource of only the named Deployments and StatefulSets (resourceNames), and list
 * pods to see them go; nothing cluster-wide, nothing on the workloads themselves. The rules are
 * those of scaleDownRbacRules() in runner/consistency/scale-down.ts (a test compares them).
 */
export class ScaleDownRole extends ServiceAccountRole {
  constructor(scope: Construct, id: string) {
    super(scope, id, { name: V.names.scaleDownRole, rules: HelmPlaceholders.of(scope).field(V.restore.scaleDownRules), component: 'restore' });
  }
}
