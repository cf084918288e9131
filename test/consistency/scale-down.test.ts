import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { describe, expect, it } from 'vitest';
import { type ScaleDownOptions, type Workload, readScaleState, scaleDownRbacRules, validateWorkloads, withScaledDown } from '../../runner/consistency/scale-down.js';
import { ExitCode, OperationError, RunnerError, UsageError } from '../../runner/errors.js';
import { memoryLogger } from '../../runner/log.js';
import { startJsonChild } from '../helpers/child.js';
import { type ApiWorkload, type KubeApiServer, httpKubeClient, parseSelector, startKubeApi } from '../helpers/kube-api.js';
import { useTempDirs } from '../helpers/tree.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'scale-down-child.ts');
const tempDir = useTempDirs();
const NS = 'apps';

const WEB: Workload = { kind: 'Deployment', name: 'web' };
const DB: Workload = { kind: 'StatefulSet', name: 'db' };

function apiWorkloads(overrides: Partial<Record<string, Partial<ApiWorkload>>> = {}): ApiWorkload[] {
  return [
    { kind: 'Deployment', name: 'web', replicas: 3, labels: { 'app.kubernetes.io/name': 'shop', 'app.kubernetes.io/component': 'web' }, terminationMs: 300, ...overrides.web },
    { kind: 'StatefulSet', name: 'db', replicas: 2, labels: { app: 'shop-db' }, terminationMs: 150, ...overrides.db },
    // Not scaled, shares a label with web: must not be waited for nor touched.
    { kind: 'Deployment', name: 'worker', replicas: 1, labels: { 'app.kubernetes.io/name': 'shop', 'app.kubernetes.io/component': 'worker' }, ...overrides.worker },
  ];
}

async function setup(options: { workloads?: ApiWorkload[]; scaled?: Workload[] } = {}) {
  const scaled = options.scaled ?? [WEB, DB];
  const api = await startKubeApi({ namespace: NS, workloads: options.workloads ?? apiWorkloads(), rules: scaleDownRbacRules(scaled) });
  const dir = await tempDir('scale-state');
  const log = memoryLogger();
  const opts: ScaleDownOptions = {
    client: httpKubeClient(api.url, api.token),
    namespace: NS,
    workloads: scaled,
    stateFile: path.join(dir, '.pvc-backup-scale-down.json'),
    log,
    pollIntervalMs: 50,
    timeoutMs: 10_000,
  };
  return { api, log, opts, stateFile: opts.stateFile };
}

/** Pods of a workload that have not ended (what holds the volume). */
function live(api: KubeApiServer, owner: string) {
  return api.pods().filter((p) => p.owner === owner && p.phase !== 'Succeeded' && p.phase !== 'Failed');
}

async function rejection(promise: Promise<unknown>): Promise<RunnerError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RunnerError);
  expect((error as Error).message).not.toContain('\n');
  return error as RunnerError;
}

describe('restore with scale-down (against a local server speaking the Kubernetes API)', () => {
  it('scales to 0, waits until the pods are gone, restores, scales back to the recorded counts', async () => {
    const { api, log, opts, stateFile } = await setup();
    let seen: { web: number; db: number; pods: number; state: unknown; at: number } | undefined;
    const result = await withScaledDown(opts, async () => {
      seen = {
        web: api.replicas('Deployment', 'web'),
        db: api.replicas('StatefulSet', 'db'),
        pods: live(api, 'Deployment/web').length + live(api, 'StatefulSet/db').length,
        state: readScaleState(stateFile),
        at: api.requests.at(-1)!.at,
      };
      return 'restored';
    });
    expect(result).toBe('restored');
    expect(seen).toMatchObject({ web: 0, db: 0, pods: 0 });
    expect(seen!.state).toMatchObject({
      version: 1,
      namespace: NS,
      workloads: [
        { kind: 'Deployment', name: 'web', replicas: 3 },
        { kind: 'StatefulSet', name: 'db', replicas: 2 },
      ],
    });
    // The restore started only after the last pod had gone (the StatefulSet's pods go one by one).
    expect(seen!.at).toBeGreaterThanOrEqual(api.lastPodRemovedAt()!);
    expect(api.lastPodRemovedAt()!).toBeGreaterThan(280);

    expect(api.replicas('Deployment', 'web')).toBe(3);
    expect(api.replicas('StatefulSet', 'db')).toBe(2);
    expect(live(api, 'Deployment/web')).toHaveLength(3);
    expect(live(api, 'Deployment/worker')).toHaveLength(1);
    expect(fs.existsSync(stateFile)).toBe(false);

    // Every request was allowed by the least-privilege rules; nothing but get/patch on the two scales and a pod list.
    expect(api.requests.every((r) => r.status === 200)).toBe(true);
    const calls = api.requests.map((r) => `${r.method} ${r.path}`);
    expect(new Set(calls.map((c) => c.replace(/\?.*$/, '')))).toEqual(
      new Set([
        'GET /apis/apps/v1/namespaces/apps/deployments/web/scale',
        'PATCH /apis/apps/v1/namespaces/apps/deployments/web/scale',
        'GET /apis/apps/v1/namespaces/apps/statefulsets/db/scale',
        'PATCH /apis/apps/v1/namespaces/apps/statefulsets/db/scale',
        'GET /api/v1/namespaces/apps/pods',
      ]),
    );
    expect(calls).toContain('GET /api/v1/namespaces/apps/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dweb%2Capp.kubernetes.io%2Fname%3Dshop');
    const patches = api.requests.filter((r) => r.method === 'PATCH');
    expect(patches.every((r) => r.contentType === 'application/merge-patch+json')).toBe(true);
    // Dry runs first, then down in the listed order, up in reverse order.
    expect(patches.map((r) => `${r.path.includes('dryRun=All') ? 'dry ' : ''}${r.path.split('/')[6]} ${JSON.stringify(r.body)}`)).toEqual([
      'dry deployments {"spec":{"replicas":0}}',
      'dry statefulsets {"spec":{"replicas":0}}',
      'deployments {"spec":{"replicas":0}}',
      'statefulsets {"spec":{"replicas":0}}',
      'statefulsets {"spec":{"replicas":2}}',
      'deployments {"spec":{"replicas":3}}',
    ]);
    expect(log.lines.map((l) => l.event)).toEqual(['scale-down.recorded', 'scale-down.scaled', 'scale-down.scaled', 'scale-down.stopped', 'scale-up.done', 'scale-up.done']);
    expect(log.lines.at(-1)!.message).toBe('scaled deployment/web back to 3 replicas');
  });

  it('does not wait for pods that already ended (an evicted pod with the same labels)', async () => {
    const { api, opts } = await setup({ scaled: [WEB] });
    api.addPod({ name: 'web-7d9f8c6b5-evict', labels: { 'app.kubernetes.io/name': 'shop', 'app.kubernetes.io/component': 'web' }, phase: 'Failed' });
    let ran = false;
    await withScaledDown(opts, async () => {
      ran = true;
    });
    expect(ran).toBe(true);
  });

  it('gives up after the timeout when a pod does not go away, restores nothing and scales back', async () => {
    const { api, log, opts, stateFile } = await setup({ scaled: [WEB] });
    api.stickPods('Deployment', 'web');
    let ran = false;
    const started = performance.now();
    const error = await rejection(
      withScaledDown({ ...opts, timeoutMs: 1500 }, async () => {
        ran = true;
      }),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(1400);
    expect(ran).toBe(false);
    expect(error.code).toBe('SCALE_DOWN_TIMEOUT');
    expect(error.message).toMatch(
      /^timed out after 2 s waiting for the application's pods to stop \(still there: web-7d9f8c6b5-\w+ \(terminating\), web-7d9f8c6b5-\w+ \(terminating\), web-7d9f8c6b5-\w+ \(terminating\)\); nothing was restored \(check the pods' finalizers and terminationGracePeriodSeconds, or raise the timeout\)$/,
    );
    expect(api.replicas('Deployment', 'web')).toBe(3);
    expect(log.lines.at(-1)).toMatchObject({ level: 'warn', event: 'scale-up.after-failure', message: 'restore failed; scaled deployment/web back to 3 replicas' });
    expect(fs.existsSync(stateFile)).toBe(false);
  });

  it('scales back when the restore fails, says so, and rethrows the restore failure', async () => {
    const { api, log, opts } = await setup();
    const failure = new OperationError('no space left on device (/data)');
    const error = await rejection(
      withScaledDown(opts, async () => {
        throw failure;
      }),
    );
    expect(error).toBe(failure);
    expect(api.replicas('Deployment', 'web')).toBe(3);
    expect(api.replicas('StatefulSet', 'db')).toBe(2);
    expect(log.lines.filter((l) => l.event === 'scale-up.after-failure').map((l) => l.message)).toEqual([
      'restore failed; scaled statefulset/db back to 2 replicas',
      'restore failed; scaled deployment/web back to 3 replicas',
    ]);
  });

  it('stops waiting when aborted (SIGTERM) and still scales back', async () => {
    const { api, opts } = await setup({ scaled: [WEB] });
    api.stickPods('Deployment', 'web');
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    const error = await rejection(withScaledDown({ ...opts, signal: abort.signal }, async () => undefined));
    expect(error.code).toBe('ABORTED');
    expect(api.replicas('Deployment', 'web')).toBe(3);
  });

  it('a killed restore leaves its record; the retry scales back to the recorded counts, not to the zeros it finds', async () => {
    const { api, stateFile } = await setup();
    const args = (mode: string) => [api.url, api.token, NS, stateFile, JSON.stringify([WEB, DB]), mode];
    const first = startJsonChild(CHILD, args('hang'));
    await first.next('restoring');
    first.proc.kill('SIGKILL');
    await first.exited;
    expect(api.replicas('Deployment', 'web')).toBe(0);
    expect(api.replicas('StatefulSet', 'db')).toBe(0);
    expect(readScaleState(stateFile)?.workloads.map((w) => w.replicas)).toEqual([3, 2]);

    const retry = startJsonChild(CHILD, args('ok'));
    const resumed = await retry.next('scale-down.resumed');
    expect(resumed.msg).toBe('deployment/web is at 0 replicas; an interrupted restore recorded 3, which it gets back');
    await retry.next('restoring');
    await retry.next('finished');
    expect(await retry.exited).toBe(0);
    expect(api.replicas('Deployment', 'web')).toBe(3);
    expect(api.replicas('StatefulSet', 'db')).toBe(2);
    expect(fs.existsSync(stateFile)).toBe(false);
  });

  it('a killed restore during the wait: the retry waits for the same pods, restores, and brings back the recorded counts', async () => {
    const { api, stateFile } = await setup({ workloads: apiWorkloads({ web: { terminationMs: 1500 } }), scaled: [WEB] });
    const args = (mode: string) => [api.url, api.token, NS, stateFile, JSON.stringify([WEB]), mode];
    const first = startJsonChild(CHILD, args('ok'));
    await first.next('scale-down.scaled');
    first.proc.kill('SIGKILL');
    await first.exited;
    expect(api.replicas('Deployment', 'web')).toBe(0);
    expect(live(api, 'Deployment/web').every((p) => p.deletionTimestamp)).toBe(true);
    const retry = startJsonChild(CHILD, args('fail'));
    await retry.next('restoring');
    expect(live(api, 'Deployment/web')).toEqual([]);
    const failed = await retry.next('failed');
    expect(failed.msg).toBe('no space left on device (/data)');
    expect(retry.events.map((e) => e.event)).toEqual(['scale-down.resumed', 'scale-down.recorded', 'scale-down.scaled', 'scale-down.stopped', 'restoring', 'scale-up.after-failure', 'failed']);
    expect(api.replicas('Deployment', 'web')).toBe(3);
    expect(fs.existsSync(stateFile)).toBe(false);
  });

  it('a workload scaled up by someone since the interrupted restore keeps its new count', async () => {
    const { api, opts, stateFile } = await setup({ workloads: apiWorkloads({ web: { replicas: 5 }, db: { replicas: 0 } }) });
    fs.writeFileSync(stateFile, JSON.stringify({ version: 1, namespace: NS, recordedAt: '2026-01-01T00:00:00Z', workloads: [{ kind: 'Deployment', name: 'web', replicas: 3 }, { kind: 'StatefulSet', name: 'db', replicas: 2 }, { kind: 'Deployment', name: 'gone', replicas: 1 }] }));
    await withScaledDown(opts, async () => undefined);
    expect(api.replicas('Deployment', 'web')).toBe(5);
    expect(api.replicas('StatefulSet', 'db')).toBe(2);
    expect((opts.log as ReturnType<typeof memoryLogger>).lines.find((l) => l.event === 'scale-down.unlisted')?.message).toBe(
      `${stateFile} also records deployment/gone at 1 replicas, which this restore does not scale; check it yourself`,
    );
  });

  it('when scaling back fails, the error gives the kubectl command and the record stays for a retry', async () => {
    const { api, opts, stateFile } = await setup();
    let patches = 0;
    const error = await rejection(
      withScaledDown(opts, async () => {
        patches = api.requests.filter((r) => r.method === 'PATCH').length;
        api.failNext('PATCH', '/deployments/web/scale', 500);
      }),
    );
    expect(patches).toBe(4);
    expect(error.code).toBe('SCALE_UP_FAILED');
    expect(error.exitCode).toBe(ExitCode.failed);
    expect(error.message).toBe(
      `the restore succeeded, but could not scale the application back up; run: kubectl -n apps scale deployment/web --replicas=3 (a retry of the restore also does it: ${stateFile} keeps the counts)`,
    );
    expect(api.replicas('StatefulSet', 'db')).toBe(2);
    expect(api.replicas('Deployment', 'web')).toBe(0);
    expect(readScaleState(stateFile)?.workloads).toEqual([
      { kind: 'Deployment', name: 'web', replicas: 3 },
      { kind: 'StatefulSet', name: 'db', replicas: 2 },
    ]);
    // The retry (a new Job pod) brings it back.
    await withScaledDown(opts, async () => undefined);
    expect(api.replicas('Deployment', 'web')).toBe(3);
    expect(fs.existsSync(stateFile)).toBe(false);
  });

  it('a restore failure and a failed scale-up are reported together, with the restore failure exit code', async () => {
    const { api, opts } = await setup({ scaled: [WEB] });
    const error = await rejection(
      withScaledDown(opts, async () => {
        api.failNext('PATCH', '/deployments/web/scale', 503);
        throw new RunnerError('archive is corrupt', ExitCode.integrity, 'INTEGRITY');
      }),
    );
    expect(error.exitCode).toBe(ExitCode.integrity);
    expect(error.message).toMatch(/^archive is corrupt; and could not scale the application back up; run: kubectl -n apps scale deployment\/web --replicas=3 /);
  });
});

describe('scale-down refuses before changing anything', () => {
  it('an unknown workload: one line naming it, no scale changed', async () => {
    const { api, opts } = await setup({ scaled: [WEB, { kind: 'StatefulSet', name: 'cache' }] });
    let ran = false;
    const error = await rejection(
      withScaledDown(opts, async () => {
        ran = true;
      }),
    );
    expect(ran).toBe(false);
    expect(error.code).toBe('SCALE_DOWN_NOT_FOUND');
    expect(error.message).toBe('statefulset/cache (scale) not found in namespace apps (check the scale-down list): statefulsets.apps "cache" not found');
    expect(api.requests.filter((r) => r.method === 'PATCH' && !r.path.includes('dryRun'))).toEqual([]);
    expect(api.replicas('Deployment', 'web')).toBe(3);
  });

  it('a workload without a pod selector is not scaled down', async () => {
    const { api, opts } = await setup({ workloads: apiWorkloads({ web: { labels: {} } }), scaled: [WEB] });
    const error = await rejection(withScaledDown(opts, async () => undefined));
    expect(error.code).toBe('SCALE_DOWN_SELECTOR');
    expect(api.requests.filter((r) => r.method === 'PATCH')).toEqual([]);
  });

  it('bad configuration is a usage error', () => {
    expect(() => validateWorkloads('apps', [{ kind: 'DaemonSet' as never, name: 'x' }])).toThrow(UsageError);
    expect(() => validateWorkloads('apps', [WEB, WEB])).toThrow('deployment/web is listed twice for scale-down');
    expect(() => validateWorkloads('apps', [{ kind: 'Deployment', name: 'Web_1' }])).toThrow(UsageError);
    expect(() => validateWorkloads('Apps', [WEB])).toThrow(UsageError);
  });

  it('an unreadable state file stops everything (it may hold the only record of the counts)', async () => {
    const { api, opts, stateFile } = await setup();
    fs.writeFileSync(stateFile, '{"version":1,"namesp');
    const error = await rejection(withScaledDown(opts, async () => undefined));
    expect(error.code).toBe('SCALE_DOWN_STATE');
    expect(api.requests).toEqual([]);
  });
});

describe('least-privilege RBAC rules', () => {
  it('are a valid Role: get/patch on the named scale subresources only, list on pods, nothing else', () => {
    const rules = scaleDownRbacRules([WEB, DB, { kind: 'Deployment', name: 'api' }]);
    expect(rules).toEqual([
      { apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: ['api', 'web'], verbs: ['get', 'patch'] },
      { apiGroups: ['apps'], resources: ['statefulsets/scale'], resourceNames: ['db'], verbs: ['get', 'patch'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
    ]);
    new Role({ metadata: { name: 'shop-pvc-backup-restore', namespace: NS }, rules }).validate();
    expect(scaleDownRbacRules([WEB])).toHaveLength(2);
    expect(scaleDownRbacRules([])).toEqual([]);
  });

  it('are enough, and each one is needed: without it the restore fails before anything is scaled', async () => {
    const full = scaleDownRbacRules([WEB, DB]);
    const variants: { label: string; rules: typeof full; code: string; message: RegExp }[] = [
      { label: 'no pods list', rules: full.filter((r) => !r.resources.includes('pods')), code: 'SCALE_DOWN_FORBIDDEN', message: /^not allowed to list the pods of deployment\/web in namespace apps; the restore's Role must allow it: pods is forbidden: User "system:serviceaccount:apps:restore" cannot list resource "pods" in API group "" in the namespace "apps"$/ },
      { label: 'no patch', rules: full.map((r) => ({ ...r, verbs: r.verbs.filter((v) => v !== 'patch') })), code: 'SCALE_DOWN_FORBIDDEN', message: /^not allowed to patch deployment\/web \(scale\) .*cannot patch resource "deployments\/scale" in API group "apps"/ },
      { label: 'no get', rules: full.map((r) => ({ ...r, verbs: r.verbs.filter((v) => v !== 'get') })), code: 'SCALE_DOWN_FORBIDDEN', message: /^not allowed to get deployment\/web \(scale\)/ },
      { label: 'another name only', rules: scaleDownRbacRules([{ kind: 'Deployment', name: 'other' }, DB]), code: 'SCALE_DOWN_FORBIDDEN', message: /deployments\.apps "web" is forbidden/ },
      { label: 'the workload, not its scale', rules: [{ apiGroups: ['apps'], resources: ['deployments', 'statefulsets'], verbs: ['get', 'patch'] }, full[2]!], code: 'SCALE_DOWN_FORBIDDEN', message: /cannot get resource "deployments\/scale"/ },
    ];
    for (const v of variants) {
      const { api, opts } = await setup();
      api.setRules(v.rules);
      const error = await rejection(withScaledDown(opts, async () => undefined));
      expect(error.code, v.label).toBe(v.code);
      expect(error.message, v.label).toMatch(v.message);
      expect(api.replicas('Deployment', 'web'), v.label).toBe(3);
      expect(api.replicas('StatefulSet', 'db'), v.label).toBe(2);
      await api.close();
    }
  });
});

describe('the test server speaks the API faithfully', () => {
  it('parses label selectors like the API (equality, set-based, existence) and rejects bad ones', () => {
    const match = (selector: string, labels: Record<string, string>) => parseSelector(selector).every((r) => r(labels));
    expect(match('app=shop,tier!=db', { app: 'shop', tier: 'web' })).toBe(true);
    expect(match('app==shop', { app: 'other' })).toBe(false);
    expect(match('tier in (web, api),!canary', { tier: 'api' })).toBe(true);
    expect(match('tier notin (web),app', { tier: 'db', app: 'x' })).toBe(true);
    expect(match('tier notin (web),app', { tier: 'web', app: 'x' })).toBe(false);
    expect(() => parseSelector('app=shop,=x')).toThrow();
    expect(() => parseSelector('a in b')).toThrow();
  });

  it('answers unauthenticated, unknown-type, invalid and strict-decoding failures with Status objects', async () => {
    const { api } = await setup();
    const call = async (method: string, p: string, init: { token?: string; type?: string; body?: string } = {}) => {
      const r = await fetch(`${api.url}${p}`, { method, headers: { authorization: `Bearer ${init.token ?? api.token}`, ...(init.type ? { 'content-type': init.type } : {}) }, body: init.body });
      return { status: r.status, body: (await r.json()) as { kind: string; code: number; message: string } };
    };
    const scale = '/apis/apps/v1/namespaces/apps/deployments/web/scale';
    expect((await call('GET', scale, { token: 'wrong' })).status).toBe(401);
    expect((await call('PATCH', scale, { type: 'application/json', body: '{"spec":{"replicas":1}}' })).status).toBe(415);
    expect((await call('PATCH', scale, { type: 'application/merge-patch+json', body: '{"spec":{"replicas":-1}}' })).status).toBe(422);
    expect((await call('PATCH', scale, { type: 'application/merge-patch+json', body: '{"spec":{"replicas":"2"}}' })).status).toBe(422);
    const unknown = await call('PATCH', scale, { type: 'application/merge-patch+json', body: '{"spec":{"replica":2}}' });
    expect(unknown).toMatchObject({ status: 400, body: { kind: 'Status', code: 400, message: 'strict decoding error: unknown field "spec.replica"' } });
    expect((await call('GET', '/api/v1/namespaces/apps/pods?labelSelector=a%20in%20b')).status).toBe(400);
    expect((await call('GET', '/api/v1/namespaces/other/pods')).status).toBe(403);
    expect(api.replicas('Deployment', 'web')).toBe(3);
    const zero = await call('PATCH', scale, { type: 'application/merge-patch+json', body: '{"spec":{"replicas":0}}' });
    expect(zero.body).toMatchObject({ kind: 'Scale', spec: {}, status: { selector: 'app.kubernetes.io/component=web,app.kubernetes.io/name=shop' } });
  });
});
