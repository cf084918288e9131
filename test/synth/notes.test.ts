import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../runner/config.js';
import { helmBinaries, runHelm, type HelmBinary } from '../helpers/helm.js';
import { CHART_PATH, NAMESPACE, parseManifests, RELEASE, renderChart, valuesFile, type ValuesOverride } from './rendered-chart.js';

/**
 * helm template does not print NOTES.txt, and Helm 3 needs a cluster even for
 * `install --dry-run=client`. So a copy of the chart renders the notes into a ConfigMap with
 * `tpl` (same engine, same values and helpers); on Helm 4 the real dry-run install proves the
 * probe prints exactly what users see.
 */
const probeChart = mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-notes-'));
cpSync(CHART_PATH, probeChart, { recursive: true });
mkdirSync(path.join(probeChart, 'files'));
copyFileSync(path.join(CHART_PATH, 'templates', 'NOTES.txt'), path.join(probeChart, 'files', 'NOTES.txt'));
writeFileSync(
  path.join(probeChart, 'templates', 'notes-probe.yaml'),
  ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', '  name: notes-probe', 'data:', '  notes: {{ tpl (.Files.Get "files/NOTES.txt") . | toJson }}', ''].join('\n'),
);

const values: ValuesOverride = { source: { claimName: 'shop-data' } };

function renderNotes(helm: HelmBinary, values: ValuesOverride): string {
  const result = runHelm(helm, ['template', RELEASE, probeChart, '--namespace', NAMESPACE, '-f', valuesFile(values)]);
  if (result.code !== 0) throw new Error(`helm ${helm.major} template failed:\n${result.stderr}`);
  const probe = parseManifests(result.stdout).find((m) => m.metadata.name === 'notes-probe');
  return (probe as unknown as { data: { notes: string } }).data.notes;
}

afterAll(() => rmSync(probeChart, { recursive: true, force: true }));

it('the notes probe prints what helm install prints (Helm 4 dry-run, no cluster needed)', () => {
  const helm4 = helmBinaries().find((h) => h.major === 4)!;
  const result = runHelm(helm4, ['install', RELEASE, CHART_PATH, '--dry-run=client', '--namespace', NAMESPACE, '-f', valuesFile(values)]);
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
    const overrides = /--overrides='([^']+)'/.exec(notes)?.[1];
    expect(notes).toContain('kubectl -n apps run shop-pvc-backup-list --rm -i --restart=Never');
    expect(overrides).toBeDefined();
    const pod = JSON.parse(overrides!);
    const container = pod.spec.containers[0];
    expect(container.name).toBe('shop-pvc-backup-list');
    const parsed = parseCommandLine(container.args, {}, { checkPaths: false });
    expect(parsed).toMatchObject({ kind: 'run', config: { command: 'list', dest: '/backup', prefix: 'shop' } });
    expect(pod.spec.volumes).toContainEqual({ name: 'backup', persistentVolumeClaim: { claimName: 'shop-pvc-backup', readOnly: true } });
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

  it('starts a restore with a new restore.nonce, and says how to run a request that already ran again', () => {
    expect(renderNotes(helm, values)).toContain('--set restore.enabled=true --set restore.archive=latest --set restore.nonce=$(date +%s) --set backup.suspend=true');
    const enabled = renderNotes(helm, { ...values, restore: { enabled: true, nonce: '1767225600' } });
    expect(enabled).toContain('saying the request "already ran" was restored before with these values (nonce "1767225600")');
    expect(enabled).toContain('helm upgrade shop charts/pvc-backup -n apps --reuse-values --set restore.nonce=$(date +%s)');
  });

  it('names the restore Job and how to follow it while a restore is enabled', () => {
    const restoreValues: ValuesOverride = { ...values, restore: { enabled: true } };
    const job = renderChart(helm, restoreValues).find((m) => m.kind === 'Job')!;
    const notes = renderNotes(helm, restoreValues);
    expect(notes).toContain(`kubectl -n apps logs -f job/${job.metadata.name}`);
    expect(notes).toContain('--set restore.enabled=false');
  });
});
