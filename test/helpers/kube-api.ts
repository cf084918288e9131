import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Scale } from 'kubernetes-models/autoscaling/v1';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Pod } from 'kubernetes-models/v1';
import { afterEach } from 'vitest';
import type { PolicyRule, WorkloadKind } from '../../runner/consistency/scale-down.js';

export { httpKubeClient } from './kube-client.js';

/**
 * A local HTTP server on 127.0.0.1 that answers the part of the Kubernetes API a scale-down
 * restore uses, as the API documents it:
 *
 *   GET|PATCH /apis/apps/v1/namespaces/NS/{deployments,statefulsets}/NAME/scale   (autoscaling/v1 Scale)
 *   GET       /api/v1/namespaces/NS/pods?labelSelector=SELECTOR                    (v1 PodList)
 *
 * Bearer-token authentication; every request is authorized against the RBAC rules of one Role
 * bound to the caller (403 with the API's own message otherwise); PATCH accepts merge and
 * strategic-merge patches (415 for other types), supports dryRun=All, and rejects unknown fields
 * and negative replicas (400/422); every Scale and Pod it sends, and every patched Scale, is
 * validated with kubernetes-models. Behind it a tiny controller: scaling down marks the excess
 * pods terminating and removes them after a delay (a StatefulSet one at a time, highest ordinal
 * first); scaling up creates running pods at once. Errors are `Status` objects.
 */

export interface ApiWorkload {
  kind: WorkloadKind;
  name: string;
  replicas: number;
  /** spec.selector.matchLabels, also the pods' labels; empty means a workload without selector. */
  labels: Record<string, string>;
  /** How long a pod takes to go away once terminating (default 200 ms). */
  terminationMs?: number;
}

export interface ApiPod {
  name: string;
  labels: Record<string, string>;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  owner?: string;
  deletionTimestamp?: string;
  /** A finalizer that never clears: the pod stays terminating forever. */
  stuck?: boolean;
}

export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
  contentType?: string;
  body?: unknown;
  /** Milliseconds since the server started. */
  at: number;
}

export interface KubeApiServer {
  url: string;
  token: string;
  namespace: string;
  serviceAccount: string;
  requests: RecordedRequest[];
  replicas(kind: WorkloadKind, name: string): number;
  /** Pods of the namespace now (including terminating ones). */
  pods(): ApiPod[];
  addPod(pod: ApiPod): void;
  /** Marks the current pods of a workload as held by a finalizer that never clears. */
  stickPods(kind: WorkloadKind, name: string): void;
  /** Milliseconds since the start when the last pod was removed. */
  lastPodRemovedAt(): number | undefined;
  /** The next request matching `method` and whose path includes `pathPart` fails with `status`. */
  failNext(method: string, pathPart: string, status: number): void;
  setRules(rules: PolicyRule[]): void;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

const servers: KubeApiServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** The API's error object. */
function status(code: number, reason: string, message: string, details?: Json): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** A label selector's string form as the API server renders it: requirements sorted by key. */
export function selectorString(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

type Requirement = (labels: Record<string, string>) => boolean;

/** Parses the label selector grammar (=, ==, !=, in, notin, exists, !exists); throws on bad syntax. */
export function parseSelector(selector: string): Requirement[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else current += ch;
  }
  if (current !== '' || parts.length > 0) parts.push(current);
  const key = '([A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?)';
  const value = '([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?';
  return parts.map((raw) => {
    const part = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^${key}\\s*(==|=|!=)\\s*${value}$`).exec(part))) {
      const [, k, , op, v = ''] = m;
      return (l) => (op === '!=' ? l[k!] !== v : l[k!] === v);
    }
    if ((m = new RegExp(`^${key}\\s+(in|notin)\\s+\\(([^)]*)\\)$`).exec(part))) {
      const [, k, , op, list] = m;
      const values = list!.split(',').map((s) => s.trim());
      if (values.some((v) => !new RegExp(`^${value}$`).test(v))) throw new Error(`invalid value in ${part}`);
      return (l) => (op === 'in' ? l[k!] !== undefined && values.includes(l[k!]!) : l[k!] === undefined || !values.includes(l[k!]!));
    }
    if ((m = new RegExp(`^(!?)${key}$`).exec(part))) {
      const [, not, k] = m;
      return (l) => (not ? l[k!] === undefined : l[k!] !== undefined);
    }
    throw new Error(`unable to parse requirement: ${JSON.stringify(part)}`);
  });
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Json = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Json) } : {};
  for (const [k, v] of Object.entries(patch as Json)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Does one RBAC rule allow this request? (resourceNames restrict only requests that name an object.) */
function allows(rule: PolicyRule, verb: string, group: string, resource: string, name: string | undefined): boolean {
  const has = (list: string[] | undefined, v: string) => (list ?? []).includes(v) || (list ?? []).includes('*');
  if (!has(rule.verbs, verb) || !has(rule.apiGroups, group) || !has(rule.resources, resource)) return false;
  if (rule.resourceNames && rule.resourceNames.length > 0) return name !== undefined && rule.resourceNames.includes(name);
  return true;
}

export async function startKubeApi(options: { namespace: string; workloads: ApiWorkload[]; rules: PolicyRule[]; serviceAccount?: string }): Promise<KubeApiServer> {
  const { namespace } = options;
  const serviceAccount = options.serviceAccount ?? 'restore';
  const token = randomBytes(16).toString('hex');
  const started = performance.now();
  const now = () => performance.now() - started;
  let rules = options.rules;
  new Role({ metadata: { name: 'restore', namespace }, rules }).validate();
  const workloads = options.workloads.map((w) => ({ ...w, uid: randomUUID(), generation: 1 }));
  const pods: (ApiPod & { uid: string; created: string })[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const failures: { method: string; pathPart: string; status: number }[] = [];
  const requests: RecordedRequest[] = [];
  let resourceVersion = 1000;
  let lastRemoval: number | undefined;

  const podsOf = (w: (typeof workloads)[number]) => pods.filter((p) => p.owner === `${w.kind}/${w.name}`);
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const removePod = (pod: ApiPod) => {
    const i = pods.indexOf(pod as (typeof pods)[number]);
    if (i >= 0) pods.splice(i, 1);
    lastRemoval = now();
    resourceVersion++;
  };
  const newPod = (w: (typeof workloads)[number], ordinal: number): (typeof pods)[number] => {
    const name = w.kind === 'StatefulSet' ? `${w.name}-${ordinal}` : `${w.name}-7d9f8c6b5-${randomBytes(3).toString('hex').slice(0, 5)}`;
    const extra: Record<string, string> = w.kind === 'StatefulSet' ? { 'statefulset.kubernetes.io/pod-name': name, 'controller-revision-hash': `${w.name}-5c9d7` } : { 'pod-template-hash': '7d9f8c6b5' };
    return { name, labels: { ...w.labels, ...extra }, phase: 'Running', owner: `${w.kind}/${w.name}`, uid: randomUUID(), created: new Date().toISOString() };
  };
  /** The controller: bring the pods of `w` to its replica count. */
  const reconcile = (w: (typeof workloads)[number]) => {
    const alive = podsOf(w).filter((p) => !p.deletionTimestamp);
    const delay = w.terminationMs ?? 200;
    if (alive.length < w.replicas) {
      for (let i = alive.length; i < w.replicas; i++) pods.push(newPod(w, i));
    } else if (alive.length > w.replicas) {
      const excess = w.kind === 'StatefulSet' ? alive.sort((a, b) => b.name.localeCompare(a.name)).slice(0, alive.length - w.replicas) : alive.slice(w.replicas);
      if (w.kind === 'StatefulSet') {
        // OrderedReady: one at a time, highest ordinal first.
        const next = (i: number) => {
          const pod = excess[i];
          if (!pod) return;
          pod.deletionTimestamp = new Date().toISOString();
          later(delay, () => {
            if (pod.stuck) return;
            removePod(pod);
            next(i + 1);
          });
        };
        next(0);
      } else {
        for (const pod of excess) {
          pod.deletionTimestamp = new Date().toISOString();
          later(delay, () => !pod.stuck && removePod(pod));
        }
      }
    }
    resourceVersion++;
  };
  for (const w of workloads) reconcile(w);

  const scaleObject = (w: (typeof workloads)[number]): Json => {
    const scale: Json = {
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: { name: w.name, namespace, uid: w.uid, resourceVersion: String(resourceVersion), creationTimestamp: '2026-01-01T00:00:00Z' },
      // ScaleSpec.replicas is omitempty: a Scale at 0 replicas has an empty spec.
      spec: w.replicas > 0 ? { replicas: w.replicas } : {},
      status: { replicas: podsOf(w).filter((p) => !p.deletionTimestamp).length, ...(Object.keys(w.labels).length > 0 ? { selector: selectorString(w.labels) } : {}) },
    };
    new Scale(scale as never).validate();
    return scale;
  };
  const podObject = (p: (typeof pods)[number]): Json => {
    const pod: Json = {
      metadata: {
        name: p.name,
        namespace,
        uid: p.uid,
        labels: p.labels,
        creationTimestamp: p.created,
        ...(p.deletionTimestamp ? { deletionTimestamp: p.deletionTimestamp, deletionGracePeriodSeconds: 30 } : {}),
        ...(p.stuck ? { finalizers: ['example.com/never-clears'] } : {}),
      },
      spec: { containers: [{ name: 'app', image: 'registry.example.com/shop:1.0' }] },
      status: { phase: p.phase },
    };
    // List items carry no kind/apiVersion on the wire; validated as Pods all the same.
    new Pod({ apiVersion: 'v1', kind: 'Pod', ...pod } as never).validate();
    return pod;
  };

  const handle = (req: http.IncomingMessage, bodyText: string): { code: number; body: Json } => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    if (req.headers.authorization !== `Bearer ${token}`) return { code: 401, body: status(401, 'Unauthorized', 'Unauthorized') };
    const injected = failures.findIndex((f) => f.method === method && url.pathname.includes(f.pathPart));
    if (injected >= 0) {
      const [f] = failures.splice(injected, 1);
      return { code: f!.status, body: status(f!.status, 'InternalError', 'Internal error occurred: injected by the test') };
    }

    const scaleMatch = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/(deployments|statefulsets)\/([^/]+)\/scale$/.exec(url.pathname);
    const podsMatch = /^\/api\/v1\/namespaces\/([^/]+)\/pods$/.exec(url.pathname);
    if (!scaleMatch && !podsMatch) return { code: 404, body: status(404, 'NotFound', 'the server could not find the requested resource') };
    const ns = decodeURIComponent((scaleMatch ?? podsMatch)![1]!);
    const resource = scaleMatch ? `${scaleMatch[2]}/scale` : 'pods';
    const group = scaleMatch ? 'apps' : '';
    const name = scaleMatch ? decodeURIComponent(scaleMatch[3]!) : undefined;
    const verb = method === 'GET' ? (name ? 'get' : url.searchParams.get('watch') === 'true' ? 'watch' : 'list') : method === 'PATCH' ? 'patch' : undefined;
    if (!verb || (podsMatch && method !== 'GET')) return { code: 405, body: status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`) };

    const user = `system:serviceaccount:${namespace}:${serviceAccount}`;
    if (ns !== namespace || !rules.some((r) => allows(r, verb, group, resource, name))) {
      const [base, sub] = resource.split('/');
      const subject = name ? `${base}${group ? `.${group}` : ''} "${name}"` : `${base}${group ? `.${group}` : ''}`;
      return {
        code: 403,
        body: status(403, 'Forbidden', `${subject} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "${group}" in the namespace "${ns}"`, {
          name,
          group,
          kind: sub ? base : resource,
        }),
      };
    }

    if (podsMatch) {
      if (verb === 'watch') return { code: 400, body: status(400, 'BadRequest', 'watch is not served here') };
      let requirements: Requirement[];
      try {
        requirements = parseSelector(url.searchParams.get('labelSelector') ?? '');
      } catch (error) {
        return { code: 400, body: status(400, 'BadRequest', `unable to parse requirement: ${(error as Error).message}`) };
      }
      const items = pods.filter((p) => requirements.every((r) => r(p.labels))).map(podObject);
      return { code: 200, body: { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(resourceVersion) }, items } };
    }

    const kind: WorkloadKind = scaleMatch![2] === 'deployments' ? 'Deployment' : 'StatefulSet';
    const w = workloads.find((x) => x.kind === kind && x.name === name);
    if (!w) return { code: 404, body: status(404, 'NotFound', `${scaleMatch![2]}.apps "${name}" not found`, { name, group: 'apps', kind: scaleMatch![2] }) };
    if (method === 'GET') return { code: 200, body: scaleObject(w) };

    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (contentType !== 'application/merge-patch+json' && contentType !== 'application/strategic-merge-patch+json') {
      return { code: 415, body: status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`) };
    }
    let patch: unknown;
    try {
      patch = JSON.parse(bodyText);
    } catch {
      return { code: 400, body: status(400, 'BadRequest', 'error decoding patch: invalid JSON') };
    }
    if (!patch || typeof patch !== 'object' || Array.isArray(patch)) return { code: 400, body: status(400, 'BadRequest', 'patch must be a JSON object') };
    const unknown = [
      ...Object.keys(patch).filter((k) => !['apiVersion', 'kind', 'metadata', 'spec', 'status'].includes(k)),
      ...Object.keys(((patch as Json).spec as Json) ?? {})
        .filter((k) => k !== 'replicas')
        .map((k) => `spec.${k}`),
    ];
    if (unknown.length > 0) return { code: 400, body: status(400, 'BadRequest', `strict decoding error: unknown field ${unknown.map((u) => `"${u}"`).join(', ')}`) };
    const patched = mergePatch(scaleObject(w), patch) as Json;
    try {
      new Scale(patched as never).validate();
    } catch (error) {
      return { code: 422, body: status(422, 'Invalid', `Scale.autoscaling "${name}" is invalid: ${(error as Error).message}`) };
    }
    const replicas = ((patched.spec as Json | undefined)?.replicas as number | undefined) ?? 0;
    if (replicas < 0) return { code: 422, body: status(422, 'Invalid', `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${replicas}: must be greater than or equal to 0`) };
    if ((patched.metadata as Json).name !== name) return { code: 400, body: status(400, 'BadRequest', 'the name of the object does not match the name on the URL') };
    if (url.searchParams.get('dryRun') === 'All') return { code: 200, body: { ...scaleObject(w), spec: replicas > 0 ? { replicas } : {} } };
    if (replicas !== w.replicas) {
      w.replicas = replicas;
      w.generation++;
      reconcile(w);
    }
    return { code: 200, body: scaleObject(w) };
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let result: { code: number; body: Json };
      try {
        result = handle(req, text);
      } catch (error) {
        result = { code: 500, body: status(500, 'InternalError', `test server: ${(error as Error).message}`) };
      }
      requests.push({
        method: req.method ?? '',
        path: req.url ?? '',
        status: result.code,
        contentType: req.headers['content-type'],
        body: text ? (JSON.parse(text) as unknown) : undefined,
        at: now(),
      });
      res.writeHead(result.code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(result.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const api: KubeApiServer = {
    url: `http://127.0.0.1:${port}`,
    token,
    namespace,
    serviceAccount,
    requests,
    replicas: (kind, name) => workloads.find((w) => w.kind === kind && w.name === name)!.replicas,
    pods: () => pods.map((p) => ({ ...p })),
    addPod: (pod) => pods.push({ ...pod, uid: randomUUID(), created: new Date().toISOString() }),
    stickPods: (kind, name) => {
      for (const p of pods.filter((x) => x.owner === `${kind}/${name}`)) p.stuck = true;
    },
    lastPodRemovedAt: () => lastRemoval,
    failNext: (method, pathPart, code) => failures.push({ method, pathPart, status: code }),
    setRules: (next) => {
      new Role({ metadata: { name: 'restore', namespace }, rules: next }).validate();
      rules = next;
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(api);
  return api;
}
