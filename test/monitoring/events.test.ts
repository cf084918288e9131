import fs from 'node:fs';
import path from 'node:path';
import { Event } from 'kubernetes-models/events.k8s.io/v1';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, runCli } from '../helpers/cli.js';
import { type Answer, type Receiver, type ReceivedRequest, type TestCertificates, closedPort, makeCertificates, startReceiver } from '../helpers/servers.js';
import { useTempDirs, writeTree } from '../helpers/tree.js';

/**
 * Kubernetes Events, posted to a local HTTPS listener that stands in for the API server. The
 * runner finds the token, CA and namespace where a pod has them (--service-account-dir points at
 * a test copy of /var/run/secrets/kubernetes.io/serviceaccount); each body is validated against
 * the events.k8s.io/v1 Event schema (kubernetes-models).
 */

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.test-token';
const tempDir = useTempDirs('file');
const receivers: Receiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

let certs: TestCertificates;
let otherCa: TestCertificates;
let serviceAccount: string;
let source: string;
let dest: string;

beforeAll(async () => {
  const dir = await tempDir('events-tls');
  certs = makeCertificates(dir, 'api');
  otherCa = makeCertificates(dir, 'other');
  serviceAccount = await tempDir('events-sa');
  fs.writeFileSync(path.join(serviceAccount, 'token'), `${TOKEN}\n`);
  fs.writeFileSync(path.join(serviceAccount, 'ca.crt'), certs.caCert);
  fs.writeFileSync(path.join(serviceAccount, 'namespace'), 'apps');
  source = await tempDir('events-source');
  dest = await tempDir('events-dest');
  writeTree(source, { 'a.txt': 'alpha\n' });
});

/** The stand-in API server: answers a created Event with 201, as the real one does. */
async function apiServer(answer: (request: ReceivedRequest, index: number) => Answer = (r) => ({ status: 201, body: r.body.toString('utf8'), headers: { 'content-type': 'application/json' } })) {
  const server = await startReceiver({ tls: { key: certs.serverKey, cert: certs.serverCert }, answer });
  receivers.push(server);
  return server;
}

function eventFlags(api: string, claim = 'shop-data', serviceAccountDir = serviceAccount): string[] {
  return ['--events', '--claim-name', claim, '--kube-api', api, '--service-account-dir', serviceAccountDir, '--log-format', 'json'];
}

/** The one Event the API received, checked against the schema and the request's framing. */
function postedEvent(server: Receiver, claim = 'shop-data'): Record<string, any> {
  expect(server.requests).toHaveLength(1);
  const request = server.requests[0]!;
  expect(request.method).toBe('POST');
  expect(request.url).toBe('/apis/events.k8s.io/v1/namespaces/apps/events');
  expect(request.headers.authorization).toBe(`Bearer ${TOKEN}`);
  expect(request.headers['content-type']).toBe('application/json');
  const event = JSON.parse(request.body.toString('utf8'));
  new Event(event).validate();
  expect(event.metadata.name).toMatch(new RegExp(`^${claim}\\.[0-9a-f]+$`));
  expect(event.metadata.namespace).toBe('apps');
  expect(event.eventTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  expect(event.reportingController).toBe('pvc-backup.io/runner');
  expect(event.reportingInstance.length).toBeLessThanOrEqual(128);
  expect(Buffer.byteLength(event.note)).toBeLessThanOrEqual(1024);
  return event;
}

describe('Kubernetes Events', () => {
  let archive: string;

  it('posts BackupSucceeded on the source claim, with the token and CA of the service account', async () => {
    const api = await apiServer();
    const run = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', ...eventFlags(api.url)]);
    expect(run.code, run.stdout).toBe(0);
    archive = jsonLines(run.stdout).find((l) => l.event === 'backup.done')!.archive as string;
    const event = postedEvent(api);
    expect(event).toMatchObject({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      type: 'Normal',
      reason: 'BackupSucceeded',
      action: 'Backup',
      regarding: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'shop-data', namespace: 'apps' },
    });
    expect(event.note).toMatch(new RegExp(`^\\[shop\\] backup ${archive.replace(/\./g, '\\.')} complete: `));
    expect(jsonLines(run.stdout).find((l) => l.event === 'monitoring.sent')?.msg).toBe('reported backup succeeded: Event BackupSucceeded');
  });

  it('posts BackupFailed as a Warning with the one-line reason', async () => {
    const api = await apiServer();
    const empty = await tempDir('events-empty');
    const run = await runCli(['backup', '--source', empty, '--dest', dest, '--prefix', 'shop', ...eventFlags(api.url)]);
    expect(run.code).toBe(1);
    const event = postedEvent(api);
    expect(event).toMatchObject({ type: 'Warning', reason: 'BackupFailed', action: 'Backup' });
    expect(event.note).toBe(`[shop] ${jsonLines(run.stdout).find((l) => l.event === 'backup.failed')!.msg}`);
  });

  it('posts nothing for a verify that passes, and VerifyFailed for one that does not', async () => {
    const api = await apiServer();
    const ok = await runCli(['verify', '--dest', dest, '--prefix', 'shop', ...eventFlags(api.url)]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(api.requests).toHaveLength(0);

    const file = path.join(dest, archive);
    const original = fs.readFileSync(file);
    const corrupt = Buffer.from(original);
    corrupt.writeUInt8(corrupt.readUInt8(corrupt.length >> 1) ^ 0xff, corrupt.length >> 1);
    fs.writeFileSync(file, corrupt);
    const bad = await runCli(['verify', '--dest', dest, '--prefix', 'shop', ...eventFlags(api.url)]);
    expect(bad.code).toBe(3);
    const event = postedEvent(api);
    expect(event).toMatchObject({ type: 'Warning', reason: 'VerifyFailed', action: 'Verify' });
    expect(event.note).toContain(archive);
    fs.writeFileSync(file, original);
  });

  it('posts RestoreSucceeded on the claim restored into', async () => {
    const api = await apiServer();
    const target = await tempDir('events-target');
    const run = await runCli(['restore', '--dest', dest, '--prefix', 'shop', '--archive', 'latest', '--target', target, ...eventFlags(api.url, 'shop-data-copy')]);
    expect(run.code, run.stdout).toBe(0);
    const event = postedEvent(api, 'shop-data-copy');
    expect(event).toMatchObject({ type: 'Normal', reason: 'RestoreSucceeded', action: 'Restore', regarding: { name: 'shop-data-copy' } });
  });

  it('reads the namespace from the service account when --namespace is not given, and takes --namespace over it', async () => {
    const api = await apiServer();
    const elsewhere = await tempDir('events-sa-other');
    for (const f of ['token', 'ca.crt']) fs.copyFileSync(path.join(serviceAccount, f), path.join(elsewhere, f));
    fs.writeFileSync(path.join(elsewhere, 'namespace'), 'other\n');
    // The directory from its variable this time.
    const flags = eventFlags(api.url).filter((f, i, all) => f !== '--service-account-dir' && all[i - 1] !== '--service-account-dir');
    const run = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', ...flags], { env: { PVC_BACKUP_SERVICE_ACCOUNT_DIR: elsewhere } });
    expect(run.code, run.stdout).toBe(0);
    expect(api.requests[0]!.url).toBe('/apis/events.k8s.io/v1/namespaces/other/events');
    const flagged = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', ...eventFlags(api.url, 'shop-data', elsewhere), '--namespace', 'apps']);
    expect(flagged.code).toBe(0);
    expect(api.requests[1]!.url).toBe('/apis/events.k8s.io/v1/namespaces/apps/events');
  });
});

describe('an API that does not take the Event is a warning, never a failed backup', () => {
  async function backupWarning(flags: string[]): Promise<string> {
    const run = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', '--monitoring-timeout', '2s', ...flags]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const warnings = jsonLines(run.stdout).filter((l) => l.event === 'monitoring.failed');
    expect(warnings).toHaveLength(1);
    expect(run.stdout).not.toContain(TOKEN);
    return warnings[0]!.msg;
  }

  it('when the API refuses it (403 with a Status)', async () => {
    const status = {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'Forbidden',
      code: 403,
      message: 'events.events.k8s.io is forbidden: User "system:serviceaccount:apps:shop" cannot create resource "events" in API group "events.k8s.io" in the namespace "apps"',
    };
    const api = await apiServer(() => ({ status: 403, body: JSON.stringify(status), headers: { 'content-type': 'application/json' } }));
    expect(await backupWarning(eventFlags(api.url))).toBe(
      `could not send the Event BackupSucceeded on PersistentVolumeClaim apps/shop-data: Kubernetes API POST /apis/events.k8s.io/v1/namespaces/apps/events answered 403: ${status.message}; the run's own result is unaffected`,
    );
    expect(api.requests).toHaveLength(1);
  });

  it('when its certificate is not signed by the service account CA', async () => {
    const api = await apiServer();
    const wrongCa = await tempDir('events-sa-wrong-ca');
    fs.copyFileSync(path.join(serviceAccount, 'token'), path.join(wrongCa, 'token'));
    fs.writeFileSync(path.join(wrongCa, 'ca.crt'), otherCa.caCert);
    const message = await backupWarning([...eventFlags(api.url, 'shop-data', wrongCa), '--namespace', 'apps']);
    expect(message).toMatch(/: Kubernetes API POST \/apis\/events\.k8s\.io\/v1\/namespaces\/apps\/events at https:\/\/127\.0\.0\.1:\d+ failed: TLS certificate not trusted \(\w+\); the run's own result is unaffected$/);
    expect(api.requests).toHaveLength(0);
  });

  it('when the pod has no token (automountServiceAccountToken off)', async () => {
    const missing = path.join(await tempDir('events-no-sa'), 'serviceaccount');
    const message = await backupWarning([...eventFlags('https://127.0.0.1:1', 'shop-data', missing), '--namespace', 'apps']);
    expect(message).toContain(`cannot read the cluster CA certificate ${missing}/ca.crt (not found); is the service-account token mounted in this pod?`);
  });

  it('when no API address is known (not in a pod)', async () => {
    const run = await runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'shop', '--events', '--claim-name', 'shop-data', '--namespace', 'apps', '--log-format', 'json'], {
      env: { KUBERNETES_SERVICE_HOST: undefined, KUBERNETES_SERVICE_PORT: undefined },
    });
    expect(run.code).toBe(0);
    expect(jsonLines(run.stdout).find((l) => l.event === 'monitoring.failed')?.msg).toContain('no Kubernetes API address: KUBERNETES_SERVICE_HOST is not set');
  });

  it('when the API is down: within the timeout', async () => {
    const started = Date.now();
    const message = await backupWarning(eventFlags(`https://127.0.0.1:${await closedPort()}`));
    expect(message).toContain('failed: connection refused');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('needs --claim-name with --events (exit 2, before anything is written)', async () => {
    const fresh = await tempDir('events-fresh');
    const run = await runCli(['backup', '--source', source, '--dest', fresh, '--events', '--namespace', 'apps']);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe('pvc-backup: --events needs --claim-name NAME, the PersistentVolumeClaim to post the Events on\n');
    expect(fs.readdirSync(fresh)).toEqual([]);
  });
});
