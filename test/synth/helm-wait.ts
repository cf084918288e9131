import { podTemplateOf, type Manifest } from './rendered-chart.js';

/**
 * What `helm install --wait` decides for the rendered objects right after it created them, by
 * Helm's own rules, read from its source:
 *
 * - Helm 3 (and Helm 4 `--wait=legacy`), pkg/kube/ready.go: a PersistentVolumeClaim is ready when
 *   `status.phase` is Bound; a Job only with `--wait-for-jobs`, then when `succeeded >= completions`
 *   (an error once `failed > backoffLimit`); a Pod when its Ready condition is True; CronJobs,
 *   ServiceAccounts and other kinds always.
 * - Helm 4 `--wait` (watcher), pkg/kube/statuswait.go with kstatus (fluxcd/cli-utils
 *   pkg/kstatus/status/core.go): a claim is Current when Bound; a Job is Current once started
 *   (`status.startTime`), Failed with a Failed condition; with `--wait-for-jobs`
 *   (internal/statusreaders/job_status_reader.go) Current only when Complete.
 *
 * Hook resources (helm.sh/hook) are not part of the wait: Helm runs post-install hooks after it,
 * test hooks only on `helm test`.
 *
 * The cluster is modelled for the one question that matters here: with a WaitForFirstConsumer
 * storage class a claim is provisioned and Bound only once a pod that uses it is scheduled. At
 * install time the only pods are those of the release's Jobs (the Job controller creates them at
 * once) and Pods; CronJobs create none until their schedule fires.
 */

export type BindingMode = 'Immediate' | 'WaitForFirstConsumer';

export interface ObservedObject {
  manifest: Manifest;
  status: Record<string, unknown>;
}

export function isHook(manifest: Manifest): boolean {
  return manifest.metadata.annotations?.['helm.sh/hook'] !== undefined;
}

/** The claims a pod template mounts, by claim name. */
export function claimsOf(manifest: Manifest): string[] {
  const volumes = (podTemplateOf(manifest).spec.volumes ?? []) as { persistentVolumeClaim?: { claimName: string } }[];
  return volumes.flatMap((v) => (v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : []));
}

/** Pod templates whose pods exist right after install (before any schedule fires). */
function podsAtInstall(manifests: Manifest[]): Manifest[] {
  return manifests.filter((m) => !isHook(m) && ((m.kind === 'Job' && m.spec?.suspend !== true) || m.kind === 'Pod'));
}

/**
 * The objects' status once the cluster has acted on a fresh install: claims bound (or not), Jobs
 * started, and, when `jobsRun`, every Job whose pod could be scheduled completed.
 */
export function afterInstall(manifests: Manifest[], binding: BindingMode, jobsRun: boolean): ObservedObject[] {
  const released = manifests.filter((m) => !isHook(m));
  const consumed = new Set(podsAtInstall(released).flatMap(claimsOf));
  const bound = (claim: Manifest) => binding === 'Immediate' || consumed.has(claim.metadata.name);
  return released.map((manifest) => {
    if (manifest.kind === 'PersistentVolumeClaim') return { manifest, status: { phase: bound(manifest) ? 'Bound' : 'Pending' } };
    if (manifest.kind === 'Job') {
      const started = { startTime: '2026-01-01T00:00:00Z', active: 1 };
      return { manifest, status: jobsRun ? { startTime: started.startTime, succeeded: 1, conditions: [{ type: 'Complete', status: 'True' }] } : started };
    }
    return { manifest, status: {} };
  });
}

export interface WaitVerdict {
  ready: boolean;
  /** What Helm reports for each object that is not ready. */
  waitingFor: string[];
}

function id(object: ObservedObject): string {
  return `${object.manifest.kind}/${object.manifest.metadata.name}`;
}

/** Helm 3's ReadyChecker (pkg/kube/ready.go), for the kinds the chart renders. */
export function helm3Wait(objects: ObservedObject[], waitForJobs: boolean): WaitVerdict {
  const waitingFor = objects.flatMap((object) => {
    const { manifest, status } = object;
    if (manifest.kind === 'PersistentVolumeClaim' && status.phase !== 'Bound') return [`PersistentVolumeClaim is not bound: ${id(object)}`];
    if (manifest.kind === 'Job' && waitForJobs) {
      const backoffLimit = (manifest.spec?.backoffLimit as number | undefined) ?? 6;
      if (((status.failed as number | undefined) ?? 0) > backoffLimit) return [`job is failed: ${id(object)}`];
      const completions = (manifest.spec?.completions as number | undefined) ?? 1; // the API server's default
      if (((status.succeeded as number | undefined) ?? 0) < completions) return [`Job is not completed: ${id(object)}`];
    }
    return [];
  });
  return { ready: waitingFor.length === 0, waitingFor };
}

/** Helm 4's status watcher (kstatus), for the kinds the chart renders. */
export function helm4Wait(objects: ObservedObject[], waitForJobs: boolean): WaitVerdict {
  const waitingFor = objects.flatMap((object) => {
    const { manifest, status } = object;
    if (manifest.kind === 'PersistentVolumeClaim' && status.phase !== 'Bound') return [`${id(object)}: InProgress, PVC is not Bound. phase: ${String(status.phase)}`];
    if (manifest.kind === 'Job') {
      const conditions = (status.conditions ?? []) as { type: string; status: string }[];
      const holds = (type: string) => conditions.some((c) => c.type === type && c.status === 'True');
      if (holds('Failed')) return [`${id(object)}: Failed`];
      if (waitForJobs && !holds('Complete')) return [`${id(object)}: InProgress, Job in progress`];
      if (!waitForJobs && !holds('Complete') && !status.startTime) return [`${id(object)}: InProgress, Job not started`];
    }
    return [];
  });
  return { ready: waitingFor.length === 0, waitingFor };
}
