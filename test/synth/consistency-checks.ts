import { expect } from 'vitest';
import { parseCommandLine, type BackupConfig, type RestoreConfig } from '../../runner/config.js';
import { DUMPS_MOUNT_PATH, dumpContainerCommand, dumpContainerEnv } from '../../runner/consistency/dumps.js';
import { scaleDownRbacRules } from '../../runner/consistency/scale-down.js';
import { overrideSet } from './override-sets.js';
import { environmentOf, find, fullname, podTemplateOf, runnerContainerOf, type Manifest } from './rendered-chart.js';

/** What the consistency values (backup.preBackup, backup.sqlite, restore.scaleDown) render, per override set. */

const F = fullname();

function runnerConfig(workload: Manifest) {
  const container = runnerContainerOf(workload);
  const parsed = parseCommandLine(container.args, environmentOf(container), { checkPaths: false });
  if (parsed.kind !== 'run') throw new Error(`not a run: ${JSON.stringify(container.args)}`);
  return parsed.config;
}

function restoreJob(manifests: Manifest[]): Manifest {
  const job = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`));
  if (!job) throw new Error('no restore Job rendered');
  return job;
}

function bindJob(manifests: Manifest[]): Manifest {
  const job = manifests.find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-bind-`));
  if (!job) throw new Error('no bind Job rendered');
  return job;
}

/** The init containers are the dump wrapper around each dump's command, writing into the shared scratch volume. */
function expectDumpContainers(backup: Manifest, dumps: { name: string; image: string; command: string[]; args?: string[]; env?: unknown[]; envFrom?: unknown[]; resources?: unknown }[]): void {
  const pod = podTemplateOf(backup).spec;
  expect(pod.initContainers.map((c: { name: string }) => c.name)).toEqual(dumps.map((d) => `dump-${d.name}`));
  for (const [i, dump] of dumps.entries()) {
    const c = pod.initContainers[i];
    expect(c.image).toBe(dump.image);
    expect(c.command).toEqual(dumpContainerCommand());
    expect(c.args).toEqual([...dump.command, ...(dump.args ?? [])]);
    expect(c.env).toEqual([...dumpContainerEnv(dump.name), ...(dump.env ?? [])]);
    expect(c.envFrom).toEqual(dump.envFrom);
    expect(c.resources).toEqual(dump.resources);
    expect(c.volumeMounts).toEqual([{ name: 'dumps', mountPath: DUMPS_MOUNT_PATH }, { name: 'tmp', mountPath: '/tmp' }]);
    // The shared securityContext, without the runner's added capabilities.
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(c.securityContext.capabilities.add).toBeUndefined();
  }
  expect(pod.volumes).toContainEqual({ name: 'dumps', emptyDir: {} });
  expect(runnerContainerOf(backup).volumeMounts).toContainEqual({ name: 'dumps', mountPath: DUMPS_MOUNT_PATH, readOnly: true });
  const config = runnerConfig(backup) as BackupConfig;
  expect(config.dumps).toEqual({ dir: DUMPS_MOUNT_PATH, names: dumps.map((d) => d.name) });
}

export const CONSISTENCY_CHECKS: Record<string, (manifests: Manifest[]) => void> = {
  'consistent backups: dumps, SQLite, restore that scales down': (manifests) => {
    const values = overrideSet('consistent backups: dumps, SQLite, restore that scales down').values;
    const backup = find(manifests, 'CronJob', F);
    expectDumpContainers(backup, values.backup!.preBackup as never);
    const config = runnerConfig(backup) as BackupConfig;
    expect(config).toMatchObject({ source: '/data', sqlite: ['*.db', 'data/app.sqlite'] });
    // SQLite copies need the application's node: the colocation term is there.
    expect(podTemplateOf(backup).spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector).toEqual({ matchLabels: { 'app.kubernetes.io/name': 'shop' } });
    // The verify CronJob and the bind Job run no dumps.
    for (const other of [find(manifests, 'CronJob', `${F}-verify`), bindJob(manifests)]) expect(podTemplateOf(other).spec.initContainers).toBeUndefined();

    // The Role: exactly the rules the runner documents, on the named workloads only.
    const workloads = values.restore!.scaleDown as { kind: 'Deployment' | 'StatefulSet'; name: string }[];
    const role = find(manifests, 'Role', `${F}-scale-down`);
    expect(role.rules).toEqual(scaleDownRbacRules(workloads));
    expect(JSON.stringify(role.rules)).not.toContain('*');
    const binding = find(manifests, 'RoleBinding', `${F}-scale-down`);
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `${F}-scale-down` });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: F, namespace: 'apps' }]);
    expect(manifests.filter((m) => m.kind === 'ClusterRole' || m.kind === 'ClusterRoleBinding')).toEqual([]);

    // The restore pod gets the token (Events are off) and the flags; the backup pod does not get the token.
    const restore = restoreJob(manifests);
    expect(podTemplateOf(restore).spec.automountServiceAccountToken).toBe(true);
    expect(podTemplateOf(backup).spec.automountServiceAccountToken).toBe(false);
    const restoreConfig = runnerConfig(restore) as RestoreConfig;
    expect(restoreConfig.scaleDown).toMatchObject({ workloads, namespace: 'apps', timeoutSeconds: 90, credentialsDir: '/var/run/secrets/kubernetes.io/serviceaccount' });
  },
  'consistent backups under the restricted profile': (manifests) => {
    const backup = find(manifests, 'CronJob', F);
    expectDumpContainers(backup, [{ name: 'postgres', image: 'postgres:16', command: ['pg_dump', '--file=shop.sql'] }]);
    // Runner and dumps share the pod's non-root user, so the runner reads what the dumps wrote.
    expect(podTemplateOf(backup).spec.securityContext).toMatchObject({ runAsUser: 1000, runAsNonRoot: true });
    expect(find(manifests, 'Role', `${F}-scale-down`).rules).toEqual(scaleDownRbacRules([{ kind: 'Deployment', name: 'shop' }]));
  },
  'dumps only, no source claim': (manifests) => {
    const backup = find(manifests, 'CronJob', F);
    expectDumpContainers(backup, [{ name: 'postgres', image: 'postgres:16', command: ['pg_dumpall', '--file=all.sql'] }]);
    expect(runnerConfig(backup)).toMatchObject({ command: 'backup', source: undefined });
    for (const workload of [backup, bindJob(manifests)]) {
      expect(podTemplateOf(workload).spec.volumes.map((v: { name: string }) => v.name)).not.toContain('source');
      expect(runnerContainerOf(workload).volumeMounts.map((m: { name: string }) => m.name)).not.toContain('source');
    }
  },
};
