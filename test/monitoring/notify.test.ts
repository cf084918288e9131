import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, cliPath, ensureBuilt, jsonLines, runCli } from '../helpers/cli.js';
import { type Answer, type Receiver, type ReceivedRequest, closedPort, startReceiver } from '../helpers/servers.js';
import { useTempDirs, writeTree } from '../helpers/tree.js';

/**
 * Notifications and the dead-man's-switch ping against a real HTTP receiver on 127.0.0.1: the
 * body and headers of each format, which outcomes are sent, retries, and that a receiver that
 * never answers costs at most the timeout and a warning, never the run.
 */

const tempDir = useTempDirs('file');
const receivers: Receiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

async function receiver(answer?: (request: ReceivedRequest, index: number) => Answer): Promise<Receiver> {
  const r = await startReceiver({ answer });
  receivers.push(r);
  return r;
}

let source: string;
let empty: string;
beforeAll(async () => {
  source = await tempDir('notify-source');
  empty = await tempDir('notify-empty');
  writeTree(source, { 'a.txt': 'alpha\n', 'b/c.txt': 'charlie\n' });
});

/** A backup of the small source (or of an empty one, which fails) with extra flags. */
async function backup(extra: string[], options: { fail?: boolean; env?: Record<string, string> } = {}) {
  const dest = await tempDir('notify-dest');
  const run = await runCli(['backup', '--source', options.fail ? empty : source, '--dest', dest, '--prefix', 'shop', '--log-format', 'json', ...extra], { env: options.env });
  expect(run.code, run.stdout + run.stderr).toBe(options.fail ? 1 : 0);
  return { ...run, lines: jsonLines(run.stdout) };
}

const FAILURE = /^source \/.+ is empty; refusing to make an empty archive/;

describe('notifications', () => {
  it('posts the generic JSON on failure, with no secret from the URL or the environment in it', async () => {
    const r = await receiver();
    const url = new URL(`${r.url}/hooks/backup?token=s3cr3t-query`);
    url.username = 'robot';
    url.password = 'pa55word';
    const run = await backup(['--notify-url', url.href, '--namespace', 'apps', '--claim-name', 'shop-data'], { fail: true, env: { API_SECRET: 'env-s3cr3t' } });
    const [request] = await r.waitForRequests(1);
    expect(request!.method).toBe('POST');
    expect(request!.url).toBe('/hooks/backup?token=s3cr3t-query');
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.headers.authorization).toBe(`Basic ${Buffer.from('robot:pa55word').toString('base64')}`);
    const body = JSON.parse(request!.body.toString('utf8'));
    expect(body).toMatchObject({
      event: 'backup.failed',
      status: 'failed',
      command: 'backup',
      prefix: 'shop',
      archive: null,
      exitCode: 1,
      namespace: 'apps',
      claim: 'shop-data',
      sourceBytes: null,
    });
    expect(body.message).toMatch(FAILURE);
    expect(body.message).toBe(run.lines.find((l) => l.event === 'backup.failed')!.msg);
    expect(Date.parse(body.finishedAt)).toBeGreaterThanOrEqual(Date.parse(body.startedAt));
    const everything = request!.body.toString('utf8') + run.stdout + run.stderr;
    for (const secret of ['pa55word', 's3cr3t-query', 'env-s3cr3t', '/hooks/backup']) expect(everything).not.toContain(secret);
    expect(run.lines.find((l) => l.event === 'monitoring.sent')?.msg).toBe('reported backup failed: json notification');
  });

  it('says nothing about a success unless --notify-on always', async () => {
    const r = await receiver();
    const quiet = await backup(['--notify-url', r.url]);
    expect(quiet.lines.some((l) => l.event.startsWith('monitoring.'))).toBe(false);
    expect(r.requests).toHaveLength(0);

    const loud = await backup(['--notify-url', r.url, '--notify-on', 'always']);
    const [request] = await r.waitForRequests(1);
    const body = JSON.parse(request!.body.toString('utf8'));
    const done = loud.lines.find((l) => l.event === 'backup.done')!;
    expect(body).toMatchObject({ event: 'backup.succeeded', status: 'succeeded', exitCode: 0, archive: done.archive, sourceBytes: done.bytesIn, archiveBytes: done.bytesOut, files: 2 });
    expect(body.message).toContain(`backup ${done.archive} complete`);
  });

  it("sends Slack's format to a slack+ URL", async () => {
    const r = await receiver();
    await backup(['--notify-url', `slack+${r.url}/services/T0/B0/x`, '--namespace', 'apps'], { fail: true });
    const [request] = await r.waitForRequests(1);
    expect(request!.url).toBe('/services/T0/B0/x');
    expect(request!.headers['content-type']).toBe('application/json');
    const body = JSON.parse(request!.body.toString('utf8'));
    expect(Object.keys(body)).toEqual(['text']);
    expect(body.text).toMatch(/^:rotating_light: \*pvc-backup: backup failed \(apps\/shop\)\*\nsource \/.+ is empty; refusing/);
  });

  it("sends ntfy's format to an ntfy+ URL: the message as the body, title, priority and tags as headers", async () => {
    const r = await receiver();
    await backup(['--notify-url', `ntfy+${r.url}/backups`, '--namespace', 'apps'], { fail: true });
    const [request] = await r.waitForRequests(1);
    expect(request!.url).toBe('/backups');
    expect(request!.headers).toMatchObject({ title: 'pvc-backup: backup failed (apps/shop)', priority: 'high', tags: 'rotating_light', 'content-type': 'text/plain; charset=utf-8' });
    expect(request!.body.toString('utf8')).toMatch(FAILURE);
  });

  it('notifies every URL given, each once', async () => {
    const [a, b] = [await receiver(), await receiver()];
    const run = await backup([], { fail: true, env: { PVC_BACKUP_NOTIFY_URL: `${a.url}/one\nntfy+${b.url}/two\n` } });
    await a.waitForRequests(1);
    await b.waitForRequests(1);
    expect(a.requests.map((x) => x.url)).toEqual(['/one']);
    expect(b.requests.map((x) => x.url)).toEqual(['/two']);
    expect(run.lines.find((l) => l.event === 'monitoring.sent')?.msg).toBe('reported backup failed: json notification, ntfy notification');
  });

  it('retries a 503 and a dropped connection, but not a 400', async () => {
    const flaky = await receiver((_, i) => (i === 0 ? 'drop' : i === 1 ? { status: 503, body: 'busy' } : { status: 200 }));
    const ok = await backup(['--notify-url', flaky.url], { fail: true });
    expect(flaky.requests).toHaveLength(3);
    expect(ok.lines.some((l) => l.event === 'monitoring.failed')).toBe(false);

    const refusing = await receiver(() => ({ status: 400, body: 'no such channel\nmore detail' }));
    const bad = await backup(['--notify-url', refusing.url], { fail: true });
    expect(refusing.requests).toHaveLength(1);
    expect(bad.lines.find((l) => l.event === 'monitoring.failed')?.msg).toBe(
      `could not send the json notification to ${refusing.url}: HTTP 400 Bad Request: no such channel; the run's own result is unaffected`,
    );
  });

  it('gives a receiver that never answers the timeout, then warns; the backup still succeeds', async () => {
    const hanging = await receiver(() => 'hang');
    const run = await backup(['--notify-url', hanging.url, '--notify-on', 'always', '--monitoring-timeout', '1500ms']);
    const done = Date.parse(run.lines.find((l) => l.event === 'backup.done')!.time);
    const warning = run.lines.find((l) => l.event === 'monitoring.failed')!;
    // The budget counts from the end of the run, so the request itself gets what is left of the 1.5 s.
    expect(warning.msg).toMatch(new RegExp(`^could not send the json notification to ${hanging.url}: no answer within 1\\.[0-5]s; the run's own result is unaffected$`));
    // From the end of the backup to the warning: the 1.5 s budget, plus scheduling slack on a loaded machine.
    expect(Date.parse(warning.time) - done).toBeGreaterThanOrEqual(1_400);
    expect(Date.parse(warning.time) - done).toBeLessThan(2_500);
    expect(hanging.requests).toHaveLength(1);
  });

  it('reports a refused command line where the run would have reported', async () => {
    const r = await receiver();
    const dest = await tempDir('notify-dest');
    const run = await runCli(['backup', '--source', path.join(source, 'missing'), '--dest', dest, '--prefix', 'shop', '--notify-url', r.url]);
    expect(run.code).toBe(2);
    const [request] = await r.waitForRequests(1);
    const body = JSON.parse(request!.body.toString('utf8'));
    expect(body).toMatchObject({ event: 'backup.failed', exitCode: 2, prefix: 'shop' });
    expect(body.message).toBe(`--source ${path.join(source, 'missing')} does not exist; create it or mount the volume there`);
  });

  it('refuses a notify URL it cannot use without repeating it (exit 2)', async () => {
    const dest = await tempDir('notify-dest');
    const run = await runCli(['backup', '--source', source, '--dest', dest, '--notify-url', 'ftp://user:hunter2@example.com/x']);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe('pvc-backup: --notify-url (number 1) must be an http(s) URL, optionally as slack+https://, ntfy+https:// or json+https://; got a ftp: URL\n');
  });
});

describe("the dead-man's switch ping", () => {
  it('pings URL/start when the run starts and URL when it succeeds, keeping the query', async () => {
    const r = await receiver();
    const run = await backup(['--ping-url', `${r.url}/ping/abc-123?create=1`]);
    await r.waitForRequests(2);
    expect(r.requests.map((x) => `${x.method} ${x.url}`)).toEqual(['POST /ping/abc-123/start?create=1', 'POST /ping/abc-123?create=1']);
    expect(r.requests[1]!.body.toString('utf8')).toContain('complete');
    // The start ping goes out before the backup has done its work.
    const done = Date.parse(run.lines.find((l) => l.event === 'backup.done')!.time);
    expect(r.requests[0]!.at).toBeLessThanOrEqual(done);
  });

  it('pings URL/fail with the reason when the run fails', async () => {
    const r = await receiver();
    await backup(['--ping-url', `${r.url}/ping/abc-123/`], { fail: true });
    await r.waitForRequests(2);
    expect(r.requests.map((x) => x.url)).toEqual(['/ping/abc-123/start', '/ping/abc-123/fail']);
    expect(r.requests[1]!.body.toString('utf8')).toMatch(FAILURE);
  });

  it('does not hold the backup up while the start ping hangs, and bounds the whole wait by the timeout', async () => {
    const hanging = await receiver(() => 'hang');
    const started = Date.now();
    const run = await backup(['--ping-url', hanging.url, '--monitoring-timeout', '1s']);
    const elapsed = Date.now() - started;
    const warnings = run.lines.filter((l) => l.event === 'monitoring.failed').map((l) => l.msg);
    expect(warnings).toEqual([
      expect.stringMatching(new RegExp(`^could not send the start ping to ${hanging.url}: no answer within (1|0\\.\\d)s; the run's own result is unaffected$`)),
      // Whatever is left of the budget once the start ping gave up.
      expect.stringMatching(new RegExp(`^could not send the success ping to ${hanging.url}: (no time left to send it|no answer within 0\\.\\ds); the run's own result is unaffected$`)),
    ]);
    const done = Date.parse(run.lines.find((l) => l.event === 'backup.done')!.time);
    expect(Date.parse(run.lines.at(-1)!.time) - done).toBeLessThan(1_800);
    expect(elapsed).toBeLessThan(10_000);
  });

  it('a dead ping endpoint is a warning and the backup succeeds', async () => {
    const run = await backup(['--ping-url', `http://127.0.0.1:${await closedPort()}/x`]);
    expect(run.lines.filter((l) => l.event === 'monitoring.failed')).toHaveLength(2);
  });
});

describe('a run stopped by SIGTERM', () => {
  it('reports the stop within a few seconds, then exits 143', async () => {
    ensureBuilt();
    const big = await tempDir('notify-big');
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(big, `blob-${i}.bin`), randomBytes(16 * 1024 * 1024));
    const dest = await tempDir('notify-dest');
    const r = await receiver();
    const child = spawn(process.execPath, [cliPath, 'backup', '--source', big, '--dest', dest, '--compression', 'zstd', '--level', '19', '--notify-url', r.url, '--log-format', 'json'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const end = Date.now() + 30_000;
    while (!fs.readdirSync(dest).some((n) => n.endsWith('.partial'))) {
      if (Date.now() > end) throw new Error(`the backup never started writing: ${stdout}`);
      await new Promise((res) => setTimeout(res, 20));
    }
    const killedAt = Date.now();
    child.kill('SIGTERM');
    const code = await closed;
    expect(Date.now() - killedAt).toBeLessThan(5_000);
    expect(code === 143 || child.signalCode === 'SIGTERM').toBe(true);
    expect(r.requests).toHaveLength(1);
    const body = JSON.parse(r.requests[0]!.body.toString('utf8'));
    expect(body).toMatchObject({ event: 'backup.failed', exitCode: 143, message: 'backup stopped by SIGTERM; partial files and the lock were removed' });
    expect(fs.readdirSync(dest)).toEqual([]);
  });
});
