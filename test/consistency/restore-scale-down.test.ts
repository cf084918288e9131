import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { SCALE_STATE_FILE } from '../../runner/consistency/restore-scale-down.js';
import { type Workload, scaleDownRbacRules } from '../../runner/consistency/scale-down.js';
import { archivesIn, jsonLines, runCli } from '../helpers/cli.js';
import { type ApiWorkload, type KubeApiServer, startKubeApi } from '../helpers/kube-api.js';
import { httpKubeClient } from '../helpers/kube-client.js';
import { useTempDirs, writeTree } from '../helpers/tree.js';

/**
 * `pvc-backup restore --scale-down` through the real CLI, against the local Kubernetes API
 * server of test/helpers/kube-api.ts (Scale and Pod objects validated with kubernetes-models,
 * every request authorized by the Role the chart renders). Not run against a real cluster.
 */

const tempDir = useTempDirs();
const NS = 'apps';
const WEB: Workload = { kind: 'Deployment', name: 'web' };
const DB: Workload = { kind: 'StatefulSet', name: 'db' };

function apiWorkloads(replicas = { web: 2, db: 1 }): ApiWorkload[] {
  return [
    { kind: 'Deployment', name: 'web', replicas: replicas.web, labels: { app: 'shop', component: 'web' }, terminationMs: 400 },
    { kind: 'StatefulSet', name: 'db', replicas: replicas.db, labels: { app: 'shop-db' }, terminationMs: 200 },
    // Shares a label with web; never touched.
    { kind: 'Deployment', name: 'worker', replicas: 1, labels: { app: 'shop', component: 'worker' } },
  ];
}

interface Setup {
  api: KubeApiServer;
  source: string;
  dest: string;
  target: string;
  serviceAccount: string;
}

let s: Setup;

async function setup(options: { workloads?: ApiWorkload[]; rulesFor?: Workload[] } = {}): Promise<Setup> {
  const api = await startKubeApi({ namespace: NS, workloads: options.workloads ?? apiWorkloads(), rules: scaleDownRbacRules(options.rulesFor ?? [WEB, DB]) });
  const serviceAccount = await tempDir('sa');
  fs.writeFileSync(path.join(serviceAccount, 'token'), `${api.token}\n`);
  fs.writeFileSync(path.join(serviceAccount, 'ca.crt'), 'not used over http\n');
  fs.writeFileSync(path.join(serviceAccount, 'namespace'), NS);
  const [source, dest, target] = [await tempDir('source'), await tempDir('dest'), await tempDir('target')];
  writeTree(source, { 'app.db': 'restored rows\n', 'uploads/a.txt': 'alpha\n' });
  writeTree(target, { 'app.db': 'current rows\n', 'stale.txt': 'goes away\n' });
  const backup = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop']);
  expect(backup.code, backup.stderr).toBe(0);
  return { api, source, dest, target, serviceAccount };
}

function restore(extra: string[] = [], env: Record<string, string> = {}) {
  return runCli(
    [
      'restore', '--dest', s.dest, '--prefix', 'shop', '--target', s.target, '--no-snapshot', '--log-format', 'json',
      '--kube-api', s.api.url, '--service-account-dir', s.serviceAccount,
      ...extra,
    ],
    { env, timeoutMs: 60_000 },
  );
}

/** Every file's path and content (what a restore must put back; the archive's own fidelity is tested elsewhere). */
function contents(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of fs.readdirSync(root, { recursive: true, encoding: 'utf8' }).sort()) {
    const abs = path.join(root, rel);
    out[rel] = fs.statSync(abs).isDirectory() ? '<dir>' : fs.readFileSync(abs, 'utf8');
  }
  return out;
}

/** The message of the run's failure line (json logs go to stdout). */
function failure(stdout: string): string {
  return jsonLines(stdout).filter((l) => l.level === 'error').at(-1)?.msg ?? '';
}

const SCALE_BOTH = ['--scale-down', 'deployment/web', '--scale-down', 'StatefulSet/db'];

function replicas() {
  return { web: s.api.replicas('Deployment', 'web'), db: s.api.replicas('StatefulSet', 'db'), worker: s.api.replicas('Deployment', 'worker') };
}

function scalePatches() {
  return s.api.requests.filter((r) => r.method === 'PATCH' && !r.path.includes('dryRun') && r.status < 300);
}

describe('restore --scale-down through the CLI', () => {
  beforeEach(async () => {
    s = await setup();
  });

  it('stops the application, restores while its pods are gone, and scales each back to its count', async () => {
    const result = await restore(SCALE_BOTH);
    expect(result.code, result.stderr).toBe(0);
    expect(contents(s.target)).toEqual(contents(s.source));
    expect(replicas()).toEqual({ web: 2, db: 1, worker: 1 });
    expect(fs.existsSync(path.join(s.dest, SCALE_STATE_FILE))).toBe(false);

    const events = jsonLines(result.stdout).map((l) => l.event);
    const at = (event: string) => events.indexOf(event);
    expect(at('scale-down.recorded')).toBeGreaterThanOrEqual(0);
    expect(at('scale-down.recorded')).toBeLessThan(at('scale-down.scaled'));
    expect(at('scale-down.stopped')).toBeLessThan(at('restore.start'));
    expect(at('restore.done')).toBeGreaterThan(at('restore.start'));
    expect(events.filter((e) => e === 'scale-up.done')).toHaveLength(2);

    // Down to 0 in the listed order, up again in reverse; the last pod went before any scale-up.
    const patches = scalePatches();
    expect(patches.map((p) => [p.path.split('/')[6], (p.body as { spec: { replicas: number } }).spec.replicas])).toEqual([
      ['deployments', 0],
      ['statefulsets', 0],
      ['statefulsets', 1],
      ['deployments', 2],
    ]);
    expect(patches.every((p) => p.contentType === 'application/merge-patch+json')).toBe(true);
    expect(s.api.lastPodRemovedAt()).toBeLessThan(patches[2]!.at);
  });

  it('scales back when the restore fails, and says so (the target is left as it was)', async () => {
    const before = contents(s.target);
    const archive = path.join(s.dest, archivesIn(s.dest)[0]!);
    const bytes = fs.readFileSync(archive);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    fs.writeFileSync(archive, bytes);
    const result = await restore(SCALE_BOTH);
    expect(result.code).toBe(3);
    expect(contents(s.target)).toEqual(before);
    expect(replicas()).toEqual({ web: 2, db: 1, worker: 1 });
    const lines = jsonLines(result.stdout);
    expect(lines.filter((l) => l.event === 'scale-up.after-failure').map((l) => l.msg)).toEqual([
      'restore failed; scaled statefulset/db back to 1 replicas',
      'restore failed; scaled deployment/web back to 2 replicas',
    ]);
    expect(fs.existsSync(path.join(s.dest, SCALE_STATE_FILE))).toBe(false);
  });

  it('changes nothing when the Role does not cover a listed workload', async () => {
    s.api.setRules(scaleDownRbacRules([WEB]));
    const before = contents(s.target);
    const result = await restore(SCALE_BOTH);
    expect(result.code).toBe(1);
    expect(failure(result.stdout)).toMatch(/not allowed to get statefulset\/db \(scale\) in namespace apps; the restore's Role must allow it/);
    expect(replicas()).toEqual({ web: 2, db: 1, worker: 1 });
    expect(scalePatches()).toEqual([]);
    expect(contents(s.target)).toEqual(before);
    expect(fs.existsSync(path.join(s.dest, SCALE_STATE_FILE))).toBe(false);
  });

  it('fails after --scale-down-timeout when a pod does not go away, restores nothing, and scales back', async () => {
    s.api.stickPods('Deployment', 'web');
    const before = contents(s.target);
    const result = await restore([...SCALE_BOTH, '--scale-down-timeout', '3s']);
    expect(result.code).toBe(1);
    expect(failure(result.stdout)).toMatch(/timed out after 3 s waiting for the application's pods to stop \(still there: web-\S+ \(terminating\)/);
    expect(contents(s.target)).toEqual(before);
    expect(replicas()).toEqual({ web: 2, db: 1, worker: 1 });
  });

  it('does not stop the application for an archive that does not exist', async () => {
    const result = await restore([...SCALE_BOTH, '--archive', 'shop-20200101T000000Z.tar.gz']);
    expect(result.code).not.toBe(0);
    expect(s.api.requests).toEqual([]);
  });
});

describe('restore --scale-down after a killed restore', () => {
  it('scales back to the counts the killed run recorded, not to the zeros it finds', async () => {
    s = await setup({ workloads: apiWorkloads({ web: 0, db: 0 }) });
    fs.writeFileSync(
      path.join(s.dest, SCALE_STATE_FILE),
      JSON.stringify({ version: 1, namespace: NS, recordedAt: new Date().toISOString(), workloads: [{ kind: 'Deployment', name: 'web', replicas: 3 }, { kind: 'StatefulSet', name: 'db', replicas: 1 }] }),
    );
    const result = await restore(SCALE_BOTH);
    expect(result.code, result.stderr).toBe(0);
    expect(contents(s.target)).toEqual(contents(s.source));
    expect(replicas()).toEqual({ web: 3, db: 1, worker: 1 });
    expect(fs.existsSync(path.join(s.dest, SCALE_STATE_FILE))).toBe(false);
  });

  it('a retry of the Job that completed the request only scales back', async () => {
    s = await setup();
    const first = await restore([...SCALE_BOTH, '--request-id', 'r1', '--job-uid', 'job-1']);
    expect(first.code, first.stderr).toBe(0);
    // As if killed after recording the request, before scaling back: the workloads are at 0.
    const client = httpKubeClient(s.api.url, s.api.token);
    await client.request('PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/web/scale`, { spec: { replicas: 0 } });
    await client.request('PATCH', `/apis/apps/v1/namespaces/${NS}/statefulsets/db/scale`, { spec: { replicas: 0 } });
    s.api.requests.splice(0);
    fs.writeFileSync(
      path.join(s.dest, SCALE_STATE_FILE),
      JSON.stringify({ version: 1, namespace: NS, recordedAt: new Date().toISOString(), workloads: [{ kind: 'Deployment', name: 'web', replicas: 4 }, { kind: 'StatefulSet', name: 'db', replicas: 1 }] }),
    );
    const retry = await restore([...SCALE_BOTH, '--request-id', 'r1', '--job-uid', 'job-1']);
    expect(retry.code, retry.stderr).toBe(0);
    expect(jsonLines(retry.stdout).map((l) => l.event)).toContain('restore.already-done');
    expect(replicas()).toEqual({ web: 4, db: 1, worker: 1 });
    expect(fs.existsSync(path.join(s.dest, SCALE_STATE_FILE))).toBe(false);
    // Without a state file, the same retry touches nothing.
    s.api.requests.splice(0);
    const again = await restore([...SCALE_BOTH, '--request-id', 'r1', '--job-uid', 'job-1']);
    expect(again.code, again.stderr).toBe(0);
    expect(s.api.requests).toEqual([]);
  });
});

describe('restore --scale-down usage', () => {
  it.each([
    [['--scale-down', 'daemonset/web'], /--scale-down must be deployment\/NAME or statefulset\/NAME, got "daemonset\/web"/],
    [['--scale-down', 'web'], /--scale-down must be deployment\/NAME or statefulset\/NAME/],
    [['--scale-down', 'deployment/Web_1'], /scale-down name "Web_1" is not a valid Deployment name/],
    [['--scale-down', 'deployment/web', '--scale-down', 'Deployment/web'], /deployment\/web is listed twice/],
    [['--scale-down-timeout', '1m'], /--scale-down-timeout is given without --scale-down/],
  ])('%j is refused with exit 2', async (flags, message) => {
    const [dest, target] = [await tempDir('dest'), await tempDir('target')];
    const result = await runCli(['restore', '--dest', dest, '--target', target, '--namespace', NS, ...flags]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it('needs a namespace', async () => {
    const [dest, target, sa] = [await tempDir('dest'), await tempDir('target'), await tempDir('sa')];
    const result = await runCli(['restore', '--dest', dest, '--target', target, '--service-account-dir', sa, '--scale-down', 'deployment/web']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--scale-down needs --namespace NS \(there is no namespace file in /);
  });
});
