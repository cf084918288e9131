import fs from 'node:fs';
import path from 'node:path';
import { OperationError, RunnerError, UsageError } from '../errors.js';
import type { Logger } from '../log.js';
import { fsyncDirectory, writeFileAtomic } from '../store/atomic.js';

/**
 * A restore that stops the application first: scale the named Deployments/StatefulSets to 0
 * through their `scale` subresource, wait until their pods are gone, run the restore, and scale
 * each back to the replica count it had — also when the restore fails. The counts are recorded
 * in a state file (on the backup volume) before anything changes, so a retry of a killed restore
 * scales back to them instead of to the zeros it finds.
 *
 * Only the scale subresource and a pod list are used: the Role this needs is
 * scaleDownRbacRules(), nothing cluster-wide and nothing on the workloads themselves.
 */

export const WORKLOAD_KINDS = ['Deployment', 'StatefulSet'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export interface Workload {
  kind: WorkloadKind;
  name: string;
}

/**
 * The Kubernetes API as this module needs it. `request` resolves with the parsed JSON body of a
 * 2xx answer and rejects otherwise, with the HTTP status in `status` when there was an answer.
 * PATCH bodies are JSON merge patches (`Content-Type: application/merge-patch+json`).
 * `path` is the request path with its query string, e.g. `/api/v1/namespaces/apps/pods?labelSelector=app%3Dshop`.
 */
export interface KubeClient {
  request(method: 'GET' | 'PATCH', path: string, body?: unknown): Promise<unknown>;
}

export interface ScaleDownOptions {
  client: KubeClient;
  namespace: string;
  workloads: readonly Workload[];
  /** Where the recorded replica counts live until every workload is back (on the backup volume). */
  stateFile: string;
  log: Logger;
  /** How long to wait for the pods to go, in total. Default 5 minutes. */
  timeoutMs?: number;
  /** Time between two pod lists while waiting. Default 2 s. */
  pollIntervalMs?: number;
  /** Stops the wait (the workloads are still scaled back). */
  signal?: AbortSignal;
}

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  resourceNames?: string[];
  verbs: string[];
}

export interface ScaleState {
  version: 1;
  namespace: string;
  recordedAt: string;
  workloads: { kind: WorkloadKind; name: string; replicas: number }[];
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_POLL_MS = 2000;
const WAIT_LOG_EVERY_MS = 10_000;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const plural = (kind: WorkloadKind): string => (kind === 'Deployment' ? 'deployments' : 'statefulsets');
const label = (w: Workload): string => `${w.kind.toLowerCase()}/${w.name}`;
const scalePath = (namespace: string, w: Workload): string => `/apis/apps/v1/namespaces/${namespace}/${plural(w.kind)}/${encodeURIComponent(w.name)}/scale`;

/** Usage errors for a bad namespace, kind, name, or a workload listed twice. */
export function validateWorkloads(namespace: string, workloads: readonly Workload[]): void {
  if (!DNS_LABEL.test(namespace)) throw new UsageError(`namespace ${JSON.stringify(namespace)} is not a valid namespace name`, 'SCALE_DOWN_CONFIG');
  const seen = new Set<string>();
  for (const w of workloads) {
    if (!WORKLOAD_KINDS.includes(w.kind)) {
      throw new UsageError(`scale-down kind ${JSON.stringify(w.kind)} is not supported: use Deployment or StatefulSet`, 'SCALE_DOWN_CONFIG');
    }
    if (!DNS_SUBDOMAIN.test(w.name)) throw new UsageError(`scale-down name ${JSON.stringify(w.name)} is not a valid ${w.kind} name`, 'SCALE_DOWN_CONFIG');
    if (seen.has(label(w))) throw new UsageError(`${label(w)} is listed twice for scale-down`, 'SCALE_DOWN_CONFIG');
    seen.add(label(w));
  }
}

/** The least-privilege Role rules for scaling `workloads` down and up again and waiting for their pods. */
export function scaleDownRbacRules(workloads: readonly Workload[]): PolicyRule[] {
  const rules: PolicyRule[] = [];
  for (const kind of WORKLOAD_KINDS) {
    const names = [...new Set(workloads.filter((w) => w.kind === kind).map((w) => w.name))].sort();
    if (names.length > 0) rules.push({ apiGroups: ['apps'], resources: [`${plural(kind)}/scale`], resourceNames: names, verbs: ['get', 'patch'] });
  }
  if (rules.length > 0) rules.push({ apiGroups: [''], resources: ['pods'], verbs: ['list'] });
  return rules;
}

/** The recorded counts, or undefined when there is no state file. An unreadable one is an error: it may hold the only record. */
export function readScaleState(stateFile: string): ScaleState | undefined {
  let text: string;
  try {
    text = fs.readFileSync(stateFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const state = JSON.parse(text) as ScaleState;
    if (state.version === 1 && typeof state.namespace === 'string' && Array.isArray(state.workloads)) return state;
  } catch {
    // fall through
  }
  throw new OperationError(
    `the scale-down state file ${stateFile} is unreadable; check the workloads' replica counts by hand, scale them as they should be, then delete it`,
    'SCALE_DOWN_STATE',
  );
}

interface HttpFailure {
  status?: number;
  message?: string;
}

/** One line for a failed API request, naming what was asked and, for 403/404, what to fix. */
function apiError(error: unknown, verb: string, what: string, namespace: string): RunnerError {
  if (error instanceof RunnerError) return error;
  const e = error as HttpFailure;
  const detail = e?.message ?? String(error);
  if (e?.status === 404) return new OperationError(`${what} not found in namespace ${namespace} (check the scale-down list): ${detail}`, 'SCALE_DOWN_NOT_FOUND');
  if (e?.status === 403) return new OperationError(`not allowed to ${verb} ${what} in namespace ${namespace}; the restore's Role must allow it: ${detail}`, 'SCALE_DOWN_FORBIDDEN');
  return new OperationError(`cannot ${verb} ${what} in namespace ${namespace}: ${detail}`, 'SCALE_DOWN_API');
}

interface ScaleView {
  replicas: number;
  selector: string;
}

async function getScale(client: KubeClient, namespace: string, w: Workload): Promise<ScaleView> {
  let scale: { spec?: { replicas?: unknown }; status?: { selector?: unknown } };
  try {
    scale = (await client.request('GET', scalePath(namespace, w))) as typeof scale;
  } catch (error) {
    throw apiError(error, 'get', `${label(w)} (scale)`, namespace);
  }
  // spec.replicas is omitted when it is 0 (omitempty).
  const replicas = scale?.spec?.replicas ?? 0;
  const selector = scale?.status?.selector;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) throw new OperationError(`${label(w)} reports an invalid replica count ${JSON.stringify(replicas)}`, 'SCALE_DOWN_API');
  if (typeof selector !== 'string' || selector.trim() === '') {
    throw new OperationError(`${label(w)} reports no pod selector in its scale subresource; cannot tell when its pods are gone, so it is not scaled down`, 'SCALE_DOWN_SELECTOR');
  }
  return { replicas, selector };
}

async function patchReplicas(client: KubeClient, namespace: string, w: Workload, replicas: number, dryRun = false): Promise<void> {
  try {
    await client.request('PATCH', `${scalePath(namespace, w)}${dryRun ? '?dryRun=All' : ''}`, { spec: { replicas } });
  } catch (error) {
    throw apiError(error, 'patch', `${label(w)} (scale)`, namespace);
  }
}

interface PodSummary {
  name: string;
  terminating: boolean;
}

/** The pods of a selector that may still run: all but those that already ended (Succeeded/Failed, e.g. evicted). */
async function livePods(client: KubeClient, namespace: string, w: Workload, selector: string): Promise<PodSummary[]> {
  let list: { items?: { metadata?: { name?: string; deletionTimestamp?: string }; status?: { phase?: string } }[] };
  try {
    list = (await client.request('GET', `/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(selector)}`)) as typeof list;
  } catch (error) {
    throw apiError(error, 'list', `the pods of ${label(w)}`, namespace);
  }
  return (list?.items ?? [])
    .filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
    .map((p) => ({ name: p.metadata?.name ?? '?', terminating: Boolean(p.metadata?.deletionTimestamp) }));
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

async function waitForPodsGone(options: ScaleDownOptions, selectors: Map<Workload, string>): Promise<void> {
  const { client, namespace, log, signal } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const started = Date.now();
  let lastLog = started;
  for (;;) {
    if (signal?.aborted) throw new OperationError('stopped while waiting for the application to stop; nothing was restored', 'ABORTED');
    const remaining: string[] = [];
    for (const [w, selector] of selectors) {
      for (const pod of await livePods(client, namespace, w, selector)) remaining.push(`${pod.name}${pod.terminating ? ' (terminating)' : ''}`);
    }
    if (remaining.length === 0) {
      log.info('scale-down.stopped', `the application's pods are gone after ${((Date.now() - started) / 1000).toFixed(1)} s`, { seconds: (Date.now() - started) / 1000 });
      return;
    }
    const elapsed = Date.now() - started;
    if (elapsed >= timeoutMs) {
      throw new OperationError(
        `timed out after ${Math.round(timeoutMs / 1000)} s waiting for the application's pods to stop (still there: ${remaining.join(', ')}); nothing was restored (check the pods' finalizers and terminationGracePeriodSeconds, or raise the timeout)`,
        'SCALE_DOWN_TIMEOUT',
      );
    }
    if (Date.now() - lastLog >= WAIT_LOG_EVERY_MS) {
      lastLog = Date.now();
      log.info('scale-down.waiting', `waiting for ${remaining.length} pod(s) to stop: ${remaining.join(', ')}`, { pods: remaining });
    }
    await sleep(Math.min(options.pollIntervalMs ?? DEFAULT_POLL_MS, timeoutMs - elapsed), signal);
  }
}

async function writeState(stateFile: string, state: ScaleState): Promise<void> {
  await writeFileAtomic(path.dirname(stateFile), path.basename(stateFile), `${JSON.stringify(state, null, 2)}\n`);
}

async function removeState(stateFile: string): Promise<void> {
  await fs.promises.rm(stateFile, { force: true });
  await fsyncDirectory(path.dirname(stateFile));
}

/**
 * Runs `work` (the restore) with the workloads scaled to 0 and their pods gone, then scales
 * each back to its recorded count, in reverse order, whatever `work` did. Rethrows the failure
 * of the wait or of `work` after scaling back; throws when scaling back fails (the state file is
 * kept, and the message gives the kubectl command).
 */
export async function withScaledDown<T>(options: ScaleDownOptions, work: () => Promise<T>): Promise<T> {
  const { client, namespace, workloads, stateFile, log } = options;
  validateWorkloads(namespace, workloads);
  if (workloads.length === 0) return work();

  // 1. Everything that can fail is tried before anything changes: read each scale, list its pods,
  //    and ask for the scale-down as a dry run (which needs the same patch permission).
  const recorded = readScaleState(stateFile);
  if (recorded && recorded.namespace !== namespace) {
    throw new OperationError(`the scale-down state file ${stateFile} belongs to namespace ${recorded.namespace}, not ${namespace}; check those workloads, then delete it`, 'SCALE_DOWN_STATE');
  }
  const current = new Map<Workload, ScaleView>();
  for (const w of workloads) {
    const view = await getScale(client, namespace, w);
    await livePods(client, namespace, w, view.selector);
    await patchReplicas(client, namespace, w, 0, true);
    current.set(w, view);
  }

  // 2. The counts to come back to: what runs now, unless it is 0 and an interrupted earlier
  //    restore recorded more (a retry finds its own zeros).
  const targets = new Map<Workload, number>();
  for (const w of workloads) {
    const now = current.get(w)!.replicas;
    const before = recorded?.workloads.find((r) => r.kind === w.kind && r.name === w.name)?.replicas;
    const target = now === 0 && before !== undefined ? before : now;
    if (now === 0 && before !== undefined && before > 0) {
      log.info('scale-down.resumed', `${label(w)} is at 0 replicas; an interrupted restore recorded ${before}, which it gets back`, { workload: label(w), replicas: before });
    }
    targets.set(w, target);
  }
  for (const r of recorded?.workloads ?? []) {
    if (!workloads.some((w) => w.kind === r.kind && w.name === r.name)) {
      log.warn('scale-down.unlisted', `${stateFile} also records ${r.kind.toLowerCase()}/${r.name} at ${r.replicas} replicas, which this restore does not scale; check it yourself`, {
        workload: `${r.kind.toLowerCase()}/${r.name}`,
        replicas: r.replicas,
      });
    }
  }
  await writeState(stateFile, {
    version: 1,
    namespace,
    recordedAt: new Date().toISOString(),
    workloads: workloads.map((w) => ({ kind: w.kind, name: w.name, replicas: targets.get(w)! })),
  });
  log.info('scale-down.recorded', `recorded replica counts in ${stateFile}: ${workloads.map((w) => `${label(w)}=${targets.get(w)}`).join(', ')}`, {
    stateFile,
    replicas: Object.fromEntries(workloads.map((w) => [label(w), targets.get(w)])),
  });

  // 3. Down, wait, restore.
  let failure: unknown;
  let result: T | undefined;
  try {
    for (const w of workloads) {
      if (current.get(w)!.replicas !== 0) await patchReplicas(client, namespace, w, 0);
      log.info('scale-down.scaled', `scaled ${label(w)} to 0 replicas`, { workload: label(w) });
    }
    await waitForPodsGone(options, new Map(workloads.map((w) => [w, current.get(w)!.selector])));
    result = await work();
  } catch (error) {
    failure = error;
  }

  // 4. Up again, in reverse order, whatever happened.
  const notBack: string[] = [];
  for (const w of [...workloads].reverse()) {
    const replicas = targets.get(w)!;
    try {
      await patchReplicas(client, namespace, w, replicas);
      if (failure === undefined) log.info('scale-up.done', `scaled ${label(w)} back to ${replicas} replicas`, { workload: label(w), replicas });
      else log.warn('scale-up.after-failure', `restore failed; scaled ${label(w)} back to ${replicas} replicas`, { workload: label(w), replicas });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      log.error('scale-up.failed', `could not scale ${label(w)} back to ${replicas} replicas: ${reason}`, { workload: label(w), replicas });
      notBack.push(`kubectl -n ${namespace} scale ${label(w)} --replicas=${replicas}`);
    }
  }
  if (notBack.length === 0) await removeState(stateFile);

  if (notBack.length > 0) {
    const scaleBack = `could not scale the application back up; run: ${notBack.join(' && ')} (a retry of the restore also does it: ${stateFile} keeps the counts)`;
    if (failure === undefined) throw new OperationError(`the restore succeeded, but ${scaleBack}`, 'SCALE_UP_FAILED');
    const message = failure instanceof Error ? failure.message : String(failure);
    const code = failure instanceof RunnerError ? failure.exitCode : 1;
    throw new RunnerError(`${message}; and ${scaleBack}`, code, failure instanceof RunnerError ? failure.code : 'FAILED', { cause: failure });
  }
  if (failure !== undefined) throw failure;
  return result as T;
}
