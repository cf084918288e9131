import { beforeAll, describe, expect, it } from 'vitest';
import { helmBinaries } from '../helpers/helm.js';
import { afterInstall, claimsOf, helm3Wait, helm4Wait, isHook } from './helm-wait.js';
import { OVERRIDE_SETS, overrideSet } from './override-sets.js';
import { find, fullname, podTemplateOf, renderChart, type Manifest } from './rendered-chart.js';

/**
 * `helm upgrade --install --wait` with a WaitForFirstConsumer storage class (the default on GKE,
 * EKS, AKS, k3s): what Helm 3's and Helm 4's readiness checks see for the rendered objects, and
 * where the new backup volume gets provisioned. See helm-wait.ts for the rules and their sources.
 */

const F = fullname();
const createsClaim = OVERRIDE_SETS.filter((s) => s.resources.includes(`PersistentVolumeClaim/${F}`));

function bindJob(manifests: Manifest[]): Manifest | undefined {
  return manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-bind-`));
}

describe.each(createsClaim.filter((s) => s.bindJob).map((s) => s.name))('install of "%s" on a WaitForFirstConsumer class', (name) => {
  let manifests: Manifest[] = [];
  beforeAll(() => {
    manifests = renderChart(helmBinaries()[0]!, overrideSet(name).values);
  });

  it('is ready for Helm 3 --wait and --wait --wait-for-jobs', () => {
    expect(helm3Wait(afterInstall(manifests, 'WaitForFirstConsumer', false), false)).toEqual({ ready: true, waitingFor: [] });
    expect(helm3Wait(afterInstall(manifests, 'WaitForFirstConsumer', true), true)).toEqual({ ready: true, waitingFor: [] });
  });

  it('is ready for Helm 4 --wait (watcher) and --wait --wait-for-jobs', () => {
    expect(helm4Wait(afterInstall(manifests, 'WaitForFirstConsumer', false), false)).toEqual({ ready: true, waitingFor: [] });
    expect(helm4Wait(afterInstall(manifests, 'WaitForFirstConsumer', true), true)).toEqual({ ready: true, waitingFor: [] });
  });

  it('binds the backup claim through a release Job that schedules like the backups, with the source mounted too', () => {
    const job = bindJob(manifests)!;
    expect(isHook(job)).toBe(false);
    expect(job.spec.suspend).toBeUndefined();
    // The backup claim and the source claim: the scheduler puts the pod where both volumes can
    // be attached, so the new volume is provisioned in the zone (and, colocated, on the node)
    // where backup pods run.
    const backup = manifests.find((m) => m.kind === 'CronJob' && m.metadata.name === F);
    expect(claimsOf(job)).toContain(find(manifests, 'PersistentVolumeClaim', F).metadata.name);
    if (!backup) return; // backup.enabled=false: nothing to schedule like
    expect(claimsOf(job).sort()).toEqual(claimsOf(backup).sort());
    const bindPod = podTemplateOf(job).spec;
    const backupPod = podTemplateOf(backup).spec;
    for (const field of ['nodeSelector', 'tolerations', 'affinity', 'priorityClassName', 'runtimeClassName', 'securityContext', 'serviceAccountName', 'imagePullSecrets']) {
      expect(bindPod[field], field).toEqual(backupPod[field]);
    }
    expect(bindPod.volumes.find((v: { name: string }) => v.name === 'source')).toEqual(backupPod.volumes.find((v: { name: string }) => v.name === 'source'));
    // A pod that cannot run (a ReadWriteOnce source attached elsewhere) ends instead of pending forever.
    expect(job.spec.activeDeadlineSeconds).toBeGreaterThan(0);
  });
});

describe('without the bind Job', () => {
  let manifests: Manifest[] = [];
  beforeAll(() => {
    manifests = renderChart(helmBinaries()[0]!, overrideSet('no bind Job').values);
  });

  it('Helm 3 and Helm 4 --wait time out on the Pending backup claim with a WaitForFirstConsumer class', () => {
    expect(bindJob(manifests)).toBeUndefined();
    expect(helm3Wait(afterInstall(manifests, 'WaitForFirstConsumer', false), false)).toEqual({
      ready: false,
      waitingFor: [`PersistentVolumeClaim is not bound: PersistentVolumeClaim/${F}`],
    });
    expect(helm4Wait(afterInstall(manifests, 'WaitForFirstConsumer', false), false).waitingFor).toEqual([
      `PersistentVolumeClaim/${F}: InProgress, PVC is not Bound. phase: Pending`,
    ]);
  });

  it('are ready with an Immediate class', () => {
    expect(helm3Wait(afterInstall(manifests, 'Immediate', false), false).ready).toBe(true);
    expect(helm4Wait(afterInstall(manifests, 'Immediate', false), false).ready).toBe(true);
  });
});

describe('the helm test Pod', () => {
  it('is a test hook, so no install waits for it (it fails until the first backup exists)', () => {
    const manifests = renderChart(helmBinaries()[0]!, overrideSet('defaults plus a claim name and an image').values);
    const pod = find(manifests, 'Pod', `${F}-test`);
    expect(isHook(pod)).toBe(true);
    expect(pod.metadata.annotations!['helm.sh/hook']).toBe('test');
  });
});

describe('the bind Job name', () => {
  const nameFor = (values: Parameters<typeof renderChart>[1]) => bindJob(renderChart(helmBinaries()[0]!, values))!.metadata.name;
  const base = overrideSet('defaults plus a claim name and an image').values;

  it('stays when nothing changes, and changes with any value (its pod template is immutable)', () => {
    expect(nameFor(base)).toBe(nameFor(base));
    expect(nameFor({ ...base, image: { ...base.image, tag: '0.2.0' } })).not.toBe(nameFor(base));
    expect(nameFor({ ...base, nodeSelector: { pool: 'b' } })).not.toBe(nameFor(base));
    expect(nameFor(base)).toMatch(new RegExp(`^${F}-bind-[0-9a-f]{8}$`));
  });
});
