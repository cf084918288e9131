import { beforeAll, describe, expect, it } from 'vitest';
import { helmBinaries, type HelmResult } from '../helpers/helm.js';
import { OVERRIDE_SETS, type OverrideSet } from './override-sets.js';
import { CONSISTENCY_CHECKS } from './consistency-checks.js';
import { baselineViolations, lowestLevel, podSecurityLevel, restrictedViolations } from './pod-security.js';
import {
  find,
  fullname,
  helmTemplate,
  IMAGE_REPOSITORY,
  parseManifests,
  podTemplateOf,
  renderChart,
  REQUIRED_VALUES,
  resourceIds,
  runnerContainerOf,
  validateKubernetesObject,
  workloadsOf,
  type Manifest,
} from './rendered-chart.js';

const F = fullname();
const RESTORE_JOB = new RegExp(`^Job/${F}-restore-[0-9a-f]{8}$`);
const BIND_JOB = new RegExp(`^Job/${F}-bind-[0-9a-f]{8}$`);

function expectResources(manifests: Manifest[], set: OverrideSet): void {
  const ids = resourceIds(manifests);
  expect(ids.filter((id) => RESTORE_JOB.test(id))).toHaveLength(set.restoreJob ? 1 : 0);
  expect(ids.filter((id) => BIND_JOB.test(id))).toHaveLength(set.bindJob ? 1 : 0);
  expect(ids.filter((id) => !RESTORE_JOB.test(id) && !BIND_JOB.test(id))).toEqual([...set.resources].sort());
}

function bindJob(manifests: Manifest[]): Manifest {
  const job = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-bind-`));
  if (!job) throw new Error('no bind Job rendered');
  return job;
}

function mountsOf(manifest: Manifest): Record<string, { mountPath: string; readOnly?: boolean; subPath?: string }> {
  return Object.fromEntries(runnerContainerOf(manifest).volumeMounts.map((m: { name: string }) => [m.name, m]));
}

function volumesOf(manifest: Manifest): Record<string, any> {
  return Object.fromEntries(podTemplateOf(manifest).spec.volumes.map((v: { name: string }) => [v.name, v]));
}

const workloads = workloadsOf;

function restoreJob(manifests: Manifest[]): Manifest {
  const job = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`));
  if (!job) throw new Error('no restore Job rendered');
  return job;
}

/** What each override set must change, beyond the checks every set gets. */
const SET_CHECKS: Record<string, (manifests: Manifest[]) => void> = {
  'defaults plus a claim name and an image': (manifests) => {
    const backup = find(manifests, 'CronJob', F);
    expect(backup.spec).toMatchObject({
      schedule: '0 0 * * *',
      timeZone: 'Etc/UTC',
      suspend: false,
      concurrencyPolicy: 'Forbid',
      startingDeadlineSeconds: 600,
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 3,
    });
    expect(backup.spec.jobTemplate.spec.backoffLimit).toBe(2);
    // A Job whose pod cannot be created ends after 6 h instead of blocking later backups (Forbid).
    expect(backup.spec.jobTemplate.spec.activeDeadlineSeconds).toBe(21600);
    expect(backup.spec.jobTemplate.spec).not.toHaveProperty('ttlSecondsAfterFinished');

    const pod = podTemplateOf(backup).spec;
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(pod.serviceAccountName).toBe(F);
    expect(pod.securityContext).toEqual({ runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, seccompProfile: { type: 'RuntimeDefault' } });
    const container = runnerContainerOf(backup);
    expect(container.image).toBe(`${IMAGE_REPOSITORY}:0.1.0`);
    expect(container.imagePullPolicy).toBe('IfNotPresent');
    expect(container.resources).toEqual({ requests: { cpu: '100m', memory: '320Mi' }, limits: { memory: '512Mi' } });
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['DAC_OVERRIDE'] },
    });
    expect(mountsOf(backup).source).toEqual({ name: 'source', mountPath: '/data', readOnly: true });
    expect(volumesOf(backup).source.persistentVolumeClaim).toEqual({ claimName: 'shop-data', readOnly: true });
    expect(volumesOf(backup).backup.persistentVolumeClaim.claimName).toBe(F);

    const verify = find(manifests, 'CronJob', `${F}-verify`);
    expect(verify.spec).toMatchObject({ suspend: false, schedule: '0 0 * * *', timeZone: 'Etc/UTC', concurrencyPolicy: 'Forbid', startingDeadlineSeconds: 600 });
    expect(verify.spec.jobTemplate.spec).toMatchObject({ backoffLimit: 0, activeDeadlineSeconds: 21600 });
    // Verify reads archives only: no capabilities, and (contract) only the backup volume.
    expect(runnerContainerOf(verify).securityContext.capabilities).toEqual({ drop: ['ALL'] });
    expect(Object.keys(volumesOf(verify)).sort()).toEqual(['backup', 'tmp']);

    const bind = bindJob(manifests);
    expect(bind.spec).toMatchObject({ backoffLimit: 1, activeDeadlineSeconds: 1800 });
    expect(bind.metadata.annotations).toBeUndefined();
    expect(runnerContainerOf(bind).args).toEqual(['list', '--dest', '/backup', '--prefix', 'shop']);
    // Only the pods that report their run get the token (for Events).
    expect(podTemplateOf(bind).spec.automountServiceAccountToken).toBe(false);

    const test = find(manifests, 'Pod', `${F}-test`);
    expect(test.metadata.annotations).toEqual({ 'helm.sh/hook': 'test', 'helm.sh/hook-delete-policy': 'before-hook-creation' });
    expect(runnerContainerOf(test).args).toEqual(['verify', '--dest', '/backup', '--prefix', 'shop', '--latest']);
    expect(Object.keys(volumesOf(test)).sort()).toEqual(['backup', 'tmp']);
    expect(test.spec.restartPolicy).toBe('Never');
    expect(test.spec.automountServiceAccountToken).toBe(false);

    const claim = find(manifests, 'PersistentVolumeClaim', F);
    expect(claim.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(claim.spec).toEqual({ accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '5Gi' } }, volumeMode: 'Filesystem' });

    expect(find(manifests, 'ServiceAccount', F).automountServiceAccountToken).toBe(false);
    for (const manifest of manifests) {
      expect(manifest.metadata).toMatchObject({ namespace: 'apps' });
      expect(manifest.metadata.labels).toMatchObject({
        'app.kubernetes.io/name': 'pvc-backup',
        'app.kubernetes.io/instance': 'shop',
        'app.kubernetes.io/managed-by': 'Helm',
        'app.kubernetes.io/version': '0.1.0',
        'helm.sh/chart': 'pvc-backup-0.1.0',
      });
    }
  },

  'schedule, time zone and backup tuning': (manifests) => {
    const backup = find(manifests, 'CronJob', F);
    expect(backup.spec).toMatchObject({
      schedule: '0 */6 * * *',
      timeZone: 'Europe/Berlin',
      concurrencyPolicy: 'Replace',
      startingDeadlineSeconds: 300,
      successfulJobsHistoryLimit: 5,
      failedJobsHistoryLimit: 1,
    });
    expect(backup.spec.jobTemplate.spec).toMatchObject({ backoffLimit: 0, activeDeadlineSeconds: 7200, ttlSecondsAfterFinished: 86400 });
    expect(mountsOf(backup).source).toMatchObject({ mountPath: '/data', readOnly: true, subPath: 'uploads' });
    expect(mountsOf(bindJob(manifests)).source).toMatchObject({ mountPath: '/data', readOnly: true, subPath: 'uploads' });
    expect(find(manifests, 'CronJob', `${F}-verify`).spec.timeZone).toBe('Europe/Berlin');
  },

  'retention tiers': (manifests) => {
    const args: string[] = runnerContainerOf(find(manifests, 'CronJob', F)).args;
    const pairs = args.flatMap((a, i) => (a.startsWith('--keep-') ? [`${a} ${args[i + 1]}`] : []));
    expect(pairs).toEqual(['--keep-last 5', '--keep-hourly 0', '--keep-daily 7', '--keep-weekly 4', '--keep-monthly 12', '--keep-yearly 3']);
  },

  'existing storage claim': (manifests) => {
    for (const workload of workloads(manifests)) {
      expect(volumesOf(workload).backup.persistentVolumeClaim.claimName).toBe('archive-store');
    }
  },

  'storage options': (manifests) => {
    const claim = find(manifests, 'PersistentVolumeClaim', F);
    expect(claim.metadata.annotations).toEqual({ 'example.com/tier': 'gold' });
    expect(claim.spec).toMatchObject({ accessModes: ['ReadWriteMany'], storageClassName: 'fast-ssd', resources: { requests: { storage: '50Gi' } } });
    expect(bindJob(manifests).spec.activeDeadlineSeconds).toBe(600);
  },

  'restore enabled': (manifests) => {
    const job = restoreJob(manifests);
    expect(job.spec).not.toHaveProperty('ttlSecondsAfterFinished');
    expect(job.spec).toMatchObject({ backoffLimit: 0, activeDeadlineSeconds: 3600 });
    expect(job.metadata.annotations).toMatchObject({
      'pvc-backup.io/restore-archive': 'shop-20240601T000000Z.tar.gz',
      'pvc-backup.io/restore-mode': 'merge',
      'pvc-backup.io/restore-target': 'shop-data-copy',
    });
    // The target is the only data volume here, read-write, at the root (targetSubPath "").
    expect(mountsOf(job)).not.toHaveProperty('source');
    expect(mountsOf(job).target).toEqual({ name: 'target', mountPath: '/data' });
    expect(volumesOf(job).target.persistentVolumeClaim).toEqual({ claimName: 'shop-data-copy', readOnly: false });
    expect(mountsOf(job).backup).toEqual({ name: 'backup', mountPath: '/backup' });
    expect(runnerContainerOf(job).securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID'] });
    expect(podTemplateOf(job).spec.restartPolicy).toBe('Never');
  },

  'verify scheduled, backups suspended': (manifests) => {
    const verify = find(manifests, 'CronJob', `${F}-verify`);
    expect(verify.spec).toMatchObject({ suspend: false, schedule: '30 6 * * *' });
    expect(verify.spec).not.toHaveProperty('startingDeadlineSeconds');
    expect(verify.spec.jobTemplate.spec.activeDeadlineSeconds).toBe(1800);
    expect(find(manifests, 'CronJob', F).spec.suspend).toBe(true);
  },

  'colocation with the application pod': (manifests) => {
    const nodeAffinity = {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] }] }],
      },
    };
    for (const workload of [find(manifests, 'CronJob', F), bindJob(manifests)]) {
      expect(podTemplateOf(workload).spec.affinity).toEqual({
        nodeAffinity,
        podAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: [
            { labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'shop' } }, topologyKey: 'kubernetes.io/hostname' },
          ],
        },
      });
    }
    // Verify never mounts the source, and the application is scaled down during a restore:
    // colocating either with it would tie it to a node for nothing, or never schedule.
    expect(podTemplateOf(restoreJob(manifests)).spec.affinity).toEqual({ nodeAffinity });
    expect(podTemplateOf(find(manifests, 'CronJob', `${F}-verify`)).spec.affinity).toEqual({ nodeAffinity });
    expect(podTemplateOf(find(manifests, 'Pod', `${F}-test`)).spec.affinity).toEqual({ nodeAffinity });
  },

  'resources, scheduling and pod settings': (manifests) => {
    for (const workload of workloads(manifests)) {
      const pod = podTemplateOf(workload);
      const container = runnerContainerOf(workload);
      expect(container.image).toBe('registry.example.com/tools/pvc-backup:1.2.3');
      expect(container.imagePullPolicy).toBe('Always');
      expect(container.resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '2', memory: '1Gi' } });
      // The restore Job also gets its Job's UID (test/restore/chart-request.test.ts).
      const own = RESTORE_JOB.test(`${workload.kind}/${workload.metadata.name}`) ? ['PVC_BACKUP_JOB_UID'] : [];
      expect(container.env.map((e: { name: string }) => e.name)).toEqual(['PVC_BACKUP_LOG_FORMAT', ...own, 'PVC_BACKUP_PROGRESS_INTERVAL', 'HTTP_PROXY']);
      expect(container.envFrom).toEqual([{ configMapRef: { name: 'backup-settings' } }, { secretRef: { name: 'backup-secrets', optional: true }, prefix: 'X_' }]);
      expect(container.volumeMounts.at(-1)).toEqual({ name: 'ca', mountPath: '/etc/ssl/corporate', readOnly: true });
      expect(pod.spec.volumes.at(-1)).toEqual({ name: 'ca', configMap: { name: 'corporate-ca' } });
      expect(pod.spec).toMatchObject({ priorityClassName: 'backup-low', runtimeClassName: 'gvisor', terminationGracePeriodSeconds: 120 });
      expect(pod.spec.imagePullSecrets).toEqual([{ name: 'registry-login' }]);
      expect(pod.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', 'node.example.com/pool': 'storage' });
      expect(pod.spec.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'storage', effect: 'NoSchedule' }]);
      expect(pod.spec.serviceAccountName).toBe('backup-runner');
      expect(pod.metadata.annotations).toMatchObject({ 'example.com/owner': 'team-shop' });
      expect(pod.metadata.labels).toMatchObject({ 'example.com/cost-center': 'c42', 'app.kubernetes.io/instance': 'shop' });
    }
  },

  'per-component scheduling and resources': (manifests) => {
    const backup = podTemplateOf(find(manifests, 'CronJob', F)).spec;
    const verify = podTemplateOf(find(manifests, 'CronJob', `${F}-verify`)).spec;
    const restore = podTemplateOf(restoreJob(manifests)).spec;
    const bind = podTemplateOf(bindJob(manifests)).spec;
    // The bind Job schedules like the backups, so their volume lands where they run.
    for (const pod of [backup, bind]) {
      expect(pod.nodeSelector).toEqual({ pool: 'storage' });
      expect(pod.tolerations).toEqual([{ key: 'storage', operator: 'Exists', effect: 'NoSchedule' }]);
      expect(pod.affinity.podAntiAffinity).toBeDefined();
      expect(pod.containers[0].resources).toEqual({ requests: { cpu: '1', memory: '512Mi' }, limits: { memory: '1Gi' } });
    }
    // {} and [] mean "none" for the component; null (the default) means the shared value.
    expect(verify).not.toHaveProperty('nodeSelector');
    expect(verify).not.toHaveProperty('affinity');
    expect(verify.tolerations).toEqual([{ key: 'general', operator: 'Exists' }]);
    expect(verify.containers[0].resources).toEqual({ requests: { cpu: '50m', memory: '200Mi' } });
    expect(restore.nodeSelector).toEqual({ pool: 'general' });
    expect(restore).not.toHaveProperty('tolerations');
    expect(restore.affinity).toEqual({ nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, preference: { matchExpressions: [{ key: 'fast', operator: 'Exists' }] } }] } });
    expect(restore.containers[0].resources).toEqual({ requests: { cpu: '100m', memory: '320Mi' }, limits: { memory: '512Mi' } });
    expect(podTemplateOf(find(manifests, 'Pod', `${F}-test`)).spec.containers[0].resources).toEqual(verify.containers[0].resources);
  },

  'Helm conventions: globals, namespace, common labels and annotations': (manifests) => {
    for (const manifest of manifests) {
      expect(manifest.metadata.namespace).toBe('backups');
      expect(manifest.metadata.labels).toMatchObject({ 'example.com/team': 'storage', 'app.kubernetes.io/name': 'pvc-backup' });
      expect(manifest.metadata.annotations).toMatchObject({ 'example.com/contact': 'storage@example.com' });
    }
    expect(find(manifests, 'PersistentVolumeClaim', F).metadata.annotations).toEqual({ 'example.com/contact': 'storage@example.com', 'helm.sh/resource-policy': 'keep' });
    expect(find(manifests, 'PersistentVolumeClaim', F).spec.storageClassName).toBe('zonal-ssd');
    for (const workload of workloads(manifests)) {
      const pod = podTemplateOf(workload);
      expect(pod.spec.containers[0].image).toBe(`mirror.example.com/${IMAGE_REPOSITORY}:0.1.0`);
      expect(pod.spec.imagePullSecrets).toEqual([{ name: 'mirror-login' }, { name: 'second-login' }, { name: 'own-login' }]);
      expect(pod.metadata.labels).toMatchObject({ 'example.com/team': 'storage' });
    }
  },

  'fully non-root by hand': (manifests) => {
    for (const workload of workloads(manifests)) {
      expect(podTemplateOf(workload).spec.securityContext).toMatchObject({ runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, runAsNonRoot: true });
      expect(runnerContainerOf(workload).securityContext.capabilities).toEqual({ drop: ['ALL'] });
    }
  },

  'restricted profile': (manifests) => {
    for (const workload of workloads(manifests)) {
      const pod = podTemplateOf(workload).spec;
      expect(pod.securityContext).toMatchObject({ runAsUser: 70, runAsGroup: 70, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(runnerContainerOf(workload).securityContext.capabilities).toEqual({ drop: ['ALL'] });
      // fsGroup makes the backup claim writable; the kubelet applies it to no read-only volume,
      // so only pods that do not mount the application's volume read-write get it.
      const writesAppVolume = Object.values(volumesOf(workload)).some((v: any) => v.name !== 'backup' && v.persistentVolumeClaim && !v.persistentVolumeClaim.readOnly);
      if (writesAppVolume) expect(pod.securityContext).not.toHaveProperty('fsGroup');
      else expect(pod.securityContext).toMatchObject({ fsGroup: 70, fsGroupChangePolicy: 'OnRootMismatch' });
    }
    expect(podTemplateOf(restoreJob(manifests)).spec.securityContext).not.toHaveProperty('fsGroup');
  },

  'a capability beyond baseline': (manifests) => {
    expect(runnerContainerOf(find(manifests, 'CronJob', F)).securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['DAC_READ_SEARCH'] });
  },

  'a hostPath extra volume and an AppArmor annotation': (manifests) => {
    for (const workload of workloads(manifests)) {
      expect(podTemplateOf(workload).spec.volumes.at(-1)).toEqual({ name: 'host-ca', hostPath: { path: '/etc/ssl/certs', type: 'Directory' } });
    }
  },

  'only the backup claim': () => {},

  'no bind Job': () => {},
  ...CONSISTENCY_CHECKS,
};

describe.each(OVERRIDE_SETS)('helm template with $name', (set) => {
  const results = new Map<number, HelmResult>();
  let manifests: Manifest[] = [];

  beforeAll(() => {
    for (const helm of helmBinaries()) results.set(helm.major, helmTemplate(helm, set.values));
    const first = [...results.values()][0]!;
    if (first.code !== 0) throw new Error(`helm template failed:\n${first.stderr}`);
    manifests = parseManifests(first.stdout);
  });

  it('renders the same manifests with Helm 3 and Helm 4', () => {
    const [helm3, helm4] = [results.get(3)!, results.get(4)!];
    expect(helm3.code, helm3.stderr).toBe(0);
    expect(helm4.code, helm4.stderr).toBe(0);
    expect(helm4.stdout).toBe(helm3.stdout);
  });

  it("renders exactly the contract's resources", () => {
    expectResources(manifests, set);
  });

  it('renders objects that validate against the Kubernetes OpenAPI schemas', () => {
    for (const manifest of manifests) validateKubernetesObject(manifest);
  });

  it('runs the runner image hardened: entrypoint args only, json logs, writable /tmp, the API token only for Events', () => {
    for (const workload of workloads(manifests)) {
      const container = runnerContainerOf(workload);
      expect(container).not.toHaveProperty('command');
      expect(container.env[0]).toEqual({ name: 'PVC_BACKUP_LOG_FORMAT', value: 'json' });
      expect(mountsOf(workload).tmp).toEqual({ name: 'tmp', mountPath: '/tmp' });
      expect(volumesOf(workload).tmp).toEqual({ name: 'tmp', emptyDir: {} });
      expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      // The token only for the pods that post Events: not the bind Job, not the helm test pod.
      const reports = !BIND_JOB.test(`${workload.kind}/${workload.metadata.name}`) && workload.kind !== 'Pod';
      // And for the restore pod when it scales the application down.
      const scalesDown = RESTORE_JOB.test(`${workload.kind}/${workload.metadata.name}`) && (set.values.restore?.scaleDown?.length ?? 0) > 0;
      expect(podTemplateOf(workload).spec.automountServiceAccountToken).toBe(reports && ((set.values.events?.enabled ?? true) || scalesDown));
      expect(podTemplateOf(workload).spec.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    }
  });

  it(`builds its pods to the ${set.level} Pod Security level (the lowest of its pods), by the published rules`, () => {
    const levels = workloads(manifests).map((workload) => {
      const pod = podTemplateOf(workload);
      return { where: `${workload.kind}/${workload.metadata.name}`, level: podSecurityLevel(pod), why: [...baselineViolations(pod), ...restrictedViolations(pod)] };
    });
    expect(lowestLevel(levels.map((l) => l.level)), JSON.stringify(levels, null, 1)).toBe(set.level);
  });

  it('mounts only the backup volume in verify pods, and the source read-only wherever it is mounted', () => {
    const verifyPods = workloads(manifests).filter((w) => podTemplateOf(w).metadata.labels?.['app.kubernetes.io/component'] === 'verify');
    for (const verify of verifyPods) expect(volumesOf(verify)).not.toHaveProperty('source');
    for (const workload of workloads(manifests)) {
      const source = volumesOf(workload).source;
      if (!source) continue;
      expect(source.persistentVolumeClaim.readOnly).toBe(true);
      expect(mountsOf(workload).source!.readOnly).toBe(true);
    }
  });

  it('applies its values', () => {
    const check = SET_CHECKS[set.name];
    if (!check) throw new Error(`no checks written for override set "${set.name}"`);
    check(manifests);
  });
});

describe('resource names', () => {
  it('stay within Kubernetes limits for the longest release name', () => {
    const release = 'a'.repeat(53);
    const manifests = renderChart(helmBinaries()[0]!, { ...REQUIRED_VALUES, restore: { enabled: true } }, release);
    for (const manifest of manifests) {
      const limit = manifest.kind === 'CronJob' ? 52 : 63;
      expect(manifest.metadata.name.length, manifest.metadata.name).toBeLessThanOrEqual(limit);
      expect(manifest.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      validateKubernetesObject(manifest);
    }
    expect(new Set(resourceIds(manifests)).size).toBe(manifests.length);
  });

  it('keep label values strings for a numeric release name', () => {
    const manifests = renderChart(helmBinaries()[0]!, { ...REQUIRED_VALUES, restore: { enabled: true } }, '2024');
    for (const manifest of manifests) {
      expect(manifest.metadata.labels!['app.kubernetes.io/instance']).toBe('2024');
      validateKubernetesObject(manifest);
    }
  });

  it('do not repeat the chart name when the release already contains it', () => {
    const manifests = renderChart(helmBinaries()[0]!, { ...REQUIRED_VALUES, storage: { bindJob: { enabled: false } } }, 'pvc-backup');
    expect(resourceIds(manifests)).toEqual([
      'CronJob/pvc-backup',
      'CronJob/pvc-backup-verify',
      'PersistentVolumeClaim/pvc-backup',
      'Pod/pvc-backup-test',
      'Role/pvc-backup',
      'RoleBinding/pvc-backup',
      'ServiceAccount/pvc-backup',
    ]);
  });

  it('follow fullnameOverride', () => {
    const manifests = renderChart(helmBinaries()[0]!, { ...REQUIRED_VALUES, fullnameOverride: 'nightly', storage: { bindJob: { enabled: false } } });
    expect(resourceIds(manifests)).toEqual(['CronJob/nightly', 'CronJob/nightly-verify', 'PersistentVolumeClaim/nightly', 'Pod/nightly-test', 'Role/nightly', 'RoleBinding/nightly', 'ServiceAccount/nightly']);
  });
});
