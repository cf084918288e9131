import type { ApiObject } from 'cdk8s';
import { HelmPlaceholders, setFields } from '../helm.js';
import { V, type Component } from '../values.js';

/**
 * Where a runner pod reports its outcome: the flags for metrics, Events and notifications, the
 * notification URLs from their Secret, and the ServiceAccount token (mounted only for Events).
 */

/** The monitoring flags of a runner pod; the dead-man's-switch ping goes out from backups only. */
export function monitoringArgs(helm: HelmPlaceholders, component: Component): string[] {
  return [
    helm.argsWhen(V.monitoring.needsNamespace(component), ['--namespace', helm.arg(V.namespace)]),
    helm.optionalArg('--pushgateway-url', V.metrics.pushgatewayUrl),
    ...(component === 'backup' ? [helm.argsWhen(V.metrics.pushes, ['--schedule', helm.arg(V.backup.schedule), '--time-zone', helm.arg(V.backup.timeZone)])] : []),
    helm.argsWhen(V.events.enabled, ['--events', '--claim-name', helm.arg(V.monitoring.claimName(component))]),
    helm.argsWhen(V.notify.configured, ['--notify-on', helm.arg(V.notify.on)]),
    ...(component === 'backup' ? [helm.optionalArg('--ping-url', V.notify.pingUrl)] : []),
  ];
}

/** The token mount and the notification URLs' variable of a runner pod template and its containers (JSON pointers; see templateRunnerPod). */
export function templateMonitoring(apiObject: ApiObject, podTemplate: string, component: Component, containers: string[] = [`${podTemplate}/spec/containers/0`]): void {
  const helm = HelmPlaceholders.of(apiObject);
  setFields(apiObject, { [`${podTemplate}/spec/automountServiceAccountToken`]: helm.field(V.monitoring.mountsToken(component)) });
  for (const container of containers) setFields(apiObject, { [`${container}/env/-`]: helm.appendItems(V.notify.urlsEnv) });
}
