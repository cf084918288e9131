import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pod } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../runner/config.js';
import { helmBinaries, helmEnvironment, kubectlBinary, runHelm } from '../helpers/helm.js';
import { listPodOf as listPod, renderNotes, useNotesProbe } from './notes-probe.js';
import { OVERRIDE_SETS, overrideSet } from './override-sets.js';
import { lowestLevel, podSecurityLevel } from './pod-security.js';
import {
  CHART_PATH,
  find,
  fullname,
  NAMESPACE,
  podTemplateOf,
  RELEASE,
  renderChart,
  REQUIRED_VALUES,
  VALUES_FROM_STDIN,
  valuesInput,
  workloadsOf,
  type ValuesOverride,
} from './rendered-chart.js';

const values: ValuesOverride = REQUIRED_VALUES;
const F = fullname();
useNotesProbe();

it('the notes probe prints what helm install prints (Helm 4 dry-run, no cluster needed)', () => {
  const helm4 = helmBinaries().find((h) => h.major === 4)!;
  const result = runHelm(helm4, ['install', RELEASE, CHART_PATH, '--dry-run=client', '--namespace', NAMESPACE, ...VALUES_FROM_STDIN], { input: valuesInput(values) });
  expect(result.code, result.stderr).toBe(0);
  const installed = result.stdout.split('\nNOTES:\n')[1];
  expect(installed?.trim()).toBe(renderNotes(helm4, values).trim());
});

describe.each(helmBinaries())('NOTES.txt on Helm $major', (helm) => {
  it('prints the commands for a manual backup and its log', () => {
    const notes = renderNotes(helm, values);
    expect(notes).toContain('JOB=shop-pvc-backup-manual-$(date +%s)');
    expect(notes).toContain('kubectl -n apps create job --from=cronjob/shop-pvc-backup "$JOB"');
    expect(notes).toContain('kubectl -n apps logs -f "job/$JOB"');
  });

  it('prints a verify command from the verify CronJob', () => {
    expect(renderNotes(helm, values)).toContain('kubectl -n apps create job --from=cronjob/shop-pvc-backup-verify "$JOB"');
  });

  it('prints a list command whose pod runs a command line the runner accepts', () => {
    const notes = renderNotes(helm, values);
    expect(notes).toContain('kubectl -n apps run shop-pvc-backup-list --rm -i --restart=Never');
    const pod = listPod(notes);
    const container = pod.spec.containers[0];
    expect(container.name).toBe('shop-pvc-backup-list');
    const parsed = parseCommandLine(container.args, {}, { checkPaths: false });
    expect(parsed).toMatchObject({ kind: 'run', config: { command: 'list', dest: '/backup', prefix: 'shop' } });
    expect(pod.spec.volumes).toContainEqual({ name: 'backup', persistentVolumeClaim: { claimName: 'shop-pvc-backup', readOnly: true } });
  });

  it.each(['resources, scheduling and pod settings', 'per-component scheduling and resources', 'restricted profile', 'Helm conventions: globals, namespace, common labels and annotations'])(
    'prints a list pod that pulls, schedules and runs like the verify pods (%s)',
    (name) => {
      const set = overrideSet(name);
      const verify = podTemplateOf(find(renderChart(helm, set.values), 'CronJob', `${F}-verify`)).spec;
      const pod = listPod(renderNotes(helm, set.values));
      new Pod({ metadata: { name: 'list' }, spec: { ...pod.spec, restartPolicy: 'Never' } }).validate();
      for (const field of ['imagePullSecrets', 'nodeSelector', 'tolerations', 'affinity', 'priorityClassName', 'runtimeClassName', 'securityContext', 'serviceAccountName']) {
        expect(pod.spec[field], field).toEqual(verify[field]);
      }
      // The list pod posts no Events, so it never gets the token the verify pods get for them.
      expect(pod.spec.automountServiceAccountToken).toBe(false);
      for (const field of ['image', 'imagePullPolicy', 'resources', 'securityContext']) {
        expect(pod.spec.containers[0][field], field).toEqual(verify.containers[0][field]);
      }
      expect(podSecurityLevel(pod)).toBe(podSecurityLevel(podTemplateOf(find(renderChart(helm, set.values), 'CronJob', `${F}-verify`))));
    },
  );

  it.each(OVERRIDE_SETS.filter((s) => s.values.backup?.enabled !== false && s.values.verify?.enabled !== false).map((s) => s.name))(
    'names the Pod Security level the pods meet, the one the checker finds (%s)',
    (name) => {
      const set = overrideSet(name);
      const withRestore = { ...set.values, restore: { ...set.values.restore, enabled: true } };
      const level = lowestLevel(workloadsOf(renderChart(helm, withRestore)).map((w) => podSecurityLevel(podTemplateOf(w))));
      expect(renderNotes(helm, set.values)).toContain(`Pod Security: the pods (backup, verify, restore) meet the "${level}" level`);
    },
  );

  it('says what retention keeps: backup.keep.last over backup.keepLast, and the calendar tiers that are on', () => {
    expect(renderNotes(helm, values)).toContain('the newest 10 archives named shop-<time> are kept.\n');
    const tiers = renderNotes(helm, overrideSet('retention tiers').values);
    expect(tiers).toContain('the newest 5 archives named shop-<time> are kept, and the newest of each of the last 7 days, 4 weeks, 12 months, 3 years.\n');
    const one = renderNotes(helm, { ...values, backup: { keep: { daily: 1 } } });
    expect(one).toContain('are kept, and the newest of each of the last 1 day.\n');
  });

  it('says how to run helm test, and names the bind Job', () => {
    const notes = renderNotes(helm, values);
    expect(notes).toContain('helm test shop -n apps');
    expect(notes).toMatch(/Job shop-pvc-backup-bind-[0-9a-f]{8} is the backup claim's first consumer/);
  });

  it('prints the safe restore procedure: scale down, restore, scale up', () => {
    const notes = renderNotes(helm, values);
    const scaleDown = notes.indexOf('--replicas=0');
    const restore = notes.indexOf('--set restore.enabled=true');
    const scaleUp = notes.indexOf('--replicas=<n>');
    expect(scaleDown).toBeGreaterThan(0);
    expect(restore).toBeGreaterThan(scaleDown);
    expect(scaleUp).toBeGreaterThan(restore);
  });

  it('says a restore Job with restore.scaleDown stops and restarts the application itself', () => {
    const plain = renderNotes(helm, { ...values, restore: { enabled: true } });
    expect(plain).toContain('When it has completed, scale the application up again and turn the restore off');
    const scaling = renderNotes(helm, { ...values, restore: { enabled: true, scaleDown: [{ kind: 'Deployment', name: 'shop' }, { kind: 'StatefulSet', name: 'shop-db' }] } });
    expect(scaling).toContain('It first scales deployment/shop, statefulset/shop-db to 0 and waits for their pods to stop (restore.scaleDownTimeout),\n');
    expect(scaling).toContain('also when the restore fails.\nWhen it has completed, turn the restore off (use the chart reference you installed from):\n');
  });

  it('starts a restore with a new restore.nonce, and says how to run a request that already ran again', () => {
    expect(renderNotes(helm, values)).toContain('--set restore.enabled=true --set restore.archive=latest --set restore.nonce=$(date +%s) --set backup.suspend=true');
    const enabled = renderNotes(helm, { ...values, restore: { enabled: true, nonce: '1767225600' } });
    expect(enabled).toContain('saying the request "already ran" was restored before with these values (nonce "1767225600")');
    expect(enabled).toContain('helm upgrade shop charts/pvc-backup -n apps --reset-then-reuse-values --set restore.nonce=$(date +%s)');
  });


  it('upgrades with --reset-then-reuse-values, so new chart defaults are not lost', () => {
    const notes = renderNotes(helm, values);
    const upgrades = notes.split('\n').filter((l) => l.includes('helm upgrade'));
    expect(upgrades.length).toBeGreaterThanOrEqual(2);
    for (const line of upgrades) {
      expect(line).toContain('--reset-then-reuse-values');
      expect(line).not.toMatch(/--reuse-values/);
    }
  });

  it('names the restore Job, how to follow it, and a wait that also returns when it fails', () => {
    const restoreValues: ValuesOverride = { ...values, restore: { enabled: true } };
    const job = renderChart(helm, restoreValues).find((m) => m.kind === 'Job' && m.metadata.name.startsWith(`${F}-restore-`))!;
    const notes = renderNotes(helm, restoreValues);
    expect(notes).toContain(`kubectl -n apps logs -f job/${job.metadata.name}`);
    expect(notes).toContain('--set restore.enabled=false');
    const wait = notes.split('\n').find((l) => l.includes('until kubectl'))!;
    expect(wait).toContain(`get job/${job.metadata.name}`);
    expect(notes).not.toContain('--timeout=24h');
    expect(waitResult(wait, [{ type: 'Complete', status: 'True' }])).toBe('Complete');
    expect(waitResult(wait, [{ type: 'FailureTarget', status: 'True' }, { type: 'Failed', status: 'True' }])).toBe('Failed');
    expect(waitResult(wait, [{ type: 'Suspended', status: 'False' }])).toBe(undefined);
  });

  it('uses the namespace of namespaceOverride in every kubectl command', () => {
    const notes = renderNotes(helm, { ...values, namespaceOverride: 'backups' });
    const kubectlLines = notes.split('\n').filter((l) => /\bkubectl\b/.test(l));
    expect(kubectlLines.length).toBeGreaterThan(3);
    for (const line of kubectlLines) expect(line).toContain('kubectl -n backups ');
  });
});

/**
 * What the printed wait loop sees for a Job with these conditions: its `kubectl get -o jsonpath`
 * and `grep`, with real kubectl reading the Job from a file (`label --local`) instead of a cluster.
 * Returns the word that ends the loop, or undefined when it would keep waiting.
 */
function waitResult(line: string, conditions: { type: string; status: string }[]): string | undefined {
  const jsonpath = /-o jsonpath='([^']+)'/.exec(line)?.[1];
  const grep = /grep (-\w+) '([^']+)'/.exec(line);
  if (!jsonpath || !grep) throw new Error(`unexpected wait command: ${line}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-wait-'));
  try {
    const job = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' }, spec: { template: { spec: { containers: [{ name: 'c', image: 'x' }], restartPolicy: 'Never' } } }, status: { conditions } };
    writeFileSync(path.join(dir, 'job.json'), JSON.stringify(job));
    const got = spawnSync(kubectlBinary(), ['label', '--local', '-f', path.join(dir, 'job.json'), 'probe=1', '-o', `jsonpath=${jsonpath}`], { encoding: 'utf8', env: helmEnvironment() });
    if (got.status !== 0) throw new Error(`kubectl failed: ${got.stderr}`);
    const matched = spawnSync('grep', [grep[1]!, grep[2]!], { input: got.stdout, encoding: 'utf8' });
    return matched.status === 0 ? matched.stdout.trim() : undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
