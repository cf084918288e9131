import { ApiObject } from 'cdk8s';
import { Construct } from 'constructs';
import { HelmPlaceholders, setFields } from '../helm.js';
import { V } from '../values.js';
import { resourceMetadata } from './runner-pod.js';

/**
 * Alerts on the metrics the pods push (Prometheus Operator PrometheusRule): a failed backup, an
 * overdue backup (the runner pushes when the schedule expects the next one), missing metrics, and
 * a failed verify. The rules themselves are written out in templates/_monitoring.tpl.
 */
export class BackupPrometheusRule extends Construct {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    const helm = HelmPlaceholders.of(this);
    const rule = new ApiObject(this, 'Resource', {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: helm.field(V.names.monitoring) },
    });
    resourceMetadata(rule, V.metrics.ruleLabels);
    setFields(rule, { '/spec': helm.field(V.metrics.ruleSpec) });
  }
}
