import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runHelm, type HelmBinary } from '../helpers/helm.js';
import { afterAll } from 'vitest';
import { CHART_PATH, NAMESPACE, parseManifests, RELEASE, VALUES_FROM_STDIN, valuesInput, type ValuesOverride } from './rendered-chart.js';

/**
 * helm template does not print NOTES.txt, and Helm 3 needs a cluster even for
 * `install --dry-run=client`. So a copy of the chart renders the notes into a ConfigMap with
 * `tpl` (same engine, same values and helpers); notes.test.ts proves on Helm 4, with a real
 * dry-run install, that the probe prints exactly what users see.
 */
let probeChart: string | undefined;

/** Call at the top of a test file that renders notes: removes the probe chart after the file. */
export function useNotesProbe(): void {
  afterAll(() => {
    if (probeChart) rmSync(probeChart, { recursive: true, force: true });
    probeChart = undefined;
  });
}

function probe(): string {
  if (probeChart) return probeChart;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-notes-'));
  cpSync(CHART_PATH, dir, { recursive: true });
  mkdirSync(path.join(dir, 'files'), { recursive: true });
  copyFileSync(path.join(CHART_PATH, 'templates', 'NOTES.txt'), path.join(dir, 'files', 'NOTES.txt'));
  writeFileSync(
    path.join(dir, 'templates', 'notes-probe.yaml'),
    ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', '  name: notes-probe', 'data:', '  notes: {{ tpl (.Files.Get "files/NOTES.txt") . | toJson }}', ''].join('\n'),
  );
  probeChart = dir;
  return dir;
}

/** The NOTES helm install would print for these values (release "shop" in "apps"). */
export function renderNotes(helm: HelmBinary, values: ValuesOverride): string {
  const result = runHelm(helm, ['template', RELEASE, probe(), '--namespace', NAMESPACE, ...VALUES_FROM_STDIN], { input: valuesInput(values) });
  if (result.code !== 0) throw new Error(`helm ${helm.major} template failed:\n${result.stderr}`);
  const found = parseManifests(result.stdout).find((m) => m.metadata.name === 'notes-probe');
  return (found as unknown as { data: { notes: string } }).data.notes;
}

/** The pod the printed `kubectl run --overrides` creates: kubectl's default override type is a JSON merge (lists replaced), so the spec is the overrides' spec. */
export function listPodOf(notes: string): { spec: any } {
  const overrides = /--overrides='((?:[^']|'\\'')+)'/.exec(notes)?.[1];
  if (!overrides) throw new Error(`no --overrides in:\n${notes}`);
  return JSON.parse(overrides.replace(/'\\''/g, "'"));
}
