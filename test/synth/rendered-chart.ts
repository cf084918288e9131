import { fileURLToPath } from 'node:url';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { PersistentVolumeClaim, Pod, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import type { Values } from '../../synth/values.js';
import { runHelm, type HelmBinary, type HelmResult } from '../helpers/helm.js';

/** Renders the committed chart with real Helm and gives typed access to what came out. */

export const CHART_PATH = fileURLToPath(new URL('../../charts/pvc-backup', import.meta.url));
export const RELEASE = 'shop';
export const NAMESPACE = 'apps';

export type DeepPartial<T> = T extends unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;
/** Values a user passes with -f, checked against the type generated from the schema. */
export type ValuesOverride = DeepPartial<Values>;

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any;
  [field: string]: unknown;
}

/** Helm arguments that read these values from stdin (`-f -`); pass `valuesInput(values)` as runHelm's input. */
export const VALUES_FROM_STDIN = ['-f', '-'];

/** Values as Helm reads them with `-f -` (JSON is YAML). */
export function valuesInput(values: unknown): string {
  return JSON.stringify(values);
}

/** `helm template` of the chart with these values; the raw result, for error checks. */
export function helmTemplate(helm: HelmBinary, values: unknown, extraArgs: string[] = [], release = RELEASE): HelmResult {
  return runHelm(helm, ['template', release, CHART_PATH, '--namespace', NAMESPACE, ...VALUES_FROM_STDIN, ...extraArgs], { input: valuesInput(values) });
}

/** `helm template`, parsed; fails the test with Helm's message when rendering fails. */
export function renderChart(helm: HelmBinary, values: ValuesOverride, release = RELEASE): Manifest[] {
  const result = helmTemplate(helm, values, [], release);
  if (result.code !== 0) throw new Error(`helm ${helm.major} template failed:\n${result.stderr}`);
  return parseManifests(result.stdout);
}

export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}`);
      return doc.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
}

/** `Kind/name` of every manifest, sorted. */
export function resourceIds(manifests: Manifest[]): string[] {
  return manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
}

export function find(manifests: Manifest[], kind: string, name: string): Manifest {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind}/${name} in: ${resourceIds(manifests).join(', ')}`);
  return found;
}

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'batch/v1/CronJob': CronJob,
  'batch/v1/Job': Job,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Pod': Pod,
  'v1/ServiceAccount': ServiceAccount,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
};

/** Validates against the Kubernetes OpenAPI schema (kubernetes-models); throws on the first problem. */
export function validateKubernetesObject(manifest: Manifest): void {
  const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  if (!Model) throw new Error(`no schema for ${manifest.apiVersion} ${manifest.kind}`);
  try {
    new Model(manifest).validate();
  } catch (error) {
    throw new Error(`${manifest.kind}/${manifest.metadata.name} is not a valid Kubernetes object: ${(error as Error).message}`);
  }
}

export interface PodTemplate {
  metadata: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: any;
}

/** The pod template of a CronJob or Job, or a Pod itself. */
export function podTemplateOf(manifest: Manifest): PodTemplate {
  if (manifest.kind === 'CronJob') return manifest.spec.jobTemplate.spec.template;
  if (manifest.kind === 'Job') return manifest.spec.template;
  if (manifest.kind === 'Pod') return manifest as unknown as PodTemplate;
  throw new Error(`${manifest.kind} has no pod template`);
}

/** Every manifest that runs pods (CronJobs, Jobs, Pods). */
export function workloadsOf(manifests: Manifest[]): Manifest[] {
  return manifests.filter((m) => m.kind === 'CronJob' || m.kind === 'Job' || m.kind === 'Pod');
}

/** The one runner container of a CronJob, Job or Pod. */
export function runnerContainerOf(manifest: Manifest): any {
  const containers = podTemplateOf(manifest).spec.containers as any[];
  if (containers.length !== 1) throw new Error(`expected one container in ${manifest.kind}/${manifest.metadata.name}`);
  return containers[0];
}

/** The container's environment as the process sees it (plain values only). */
export function environmentOf(container: { env?: { name: string; value?: string }[] }): Record<string, string> {
  return Object.fromEntries((container.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
}

/** The image repository every test installs from (the chart requires one). */
export const IMAGE_REPOSITORY = 'registry.example.com/pvc-backup';

/** The values every install needs: a source claim and the image. */
export const REQUIRED_VALUES = { source: { claimName: 'shop-data' }, image: { repository: IMAGE_REPOSITORY } } as const;

/** The names of the chart's resources for a release, as the contract spells them. */
export function fullname(release = RELEASE): string {
  return release.includes('pvc-backup') ? release : `${release}-pvc-backup`;
}
