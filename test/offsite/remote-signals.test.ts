import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { describe, expect, test } from 'vitest';
import { cleanEnv, jsonLines, repoRoot, runCli } from '../helpers/cli.js';
import { startJsonChild } from '../helpers/child.js';
import { type Rgw, useRgw } from '../helpers/rgw.js';
import { useTempDirs } from '../helpers/tree.js';
import { listKeys } from '../repository/support.js';

/**
 * A bucket upload stopped mid-way by a real signal, through the real CLI: SIGTERM aborts the
 * multipart upload before the process exits 143; after SIGKILL nothing is visible either, and
 * the next run aborts the upload the killed one left.
 */

const rgw = useRgw();
const tmp = useTempDirs();
const MiB = 1024 * 1024;
const cli = path.join(repoRoot, 'runner/cli.ts');

async function bigSource(): Promise<string> {
  const source = await tmp('src');
  // Incompressible, so the upload takes a few seconds even on a quiet machine.
  for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(source, `part-${i}.bin`), randomBytes(40 * MiB));
  return source;
}

async function uploads(r: Rgw, bucket: string) {
  return (await r.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
}

/** The child's temporary directory is one of the test's own: what the run leaves in it is seen. */
function startBackup(r: Rgw, source: string, remote: string, options: { dest?: string; tmpdir?: string } = {}) {
  const args = ['backup', '--source', source, '--remote', remote, '--compression', 'none', '--log-format', 'json', '--progress-interval', '1s'];
  if (options.dest) args.push('--dest', options.dest);
  return startJsonChild(cli, args, { env: cleanEnv({ ...r.env(), TMPDIR: options.tmpdir }) });
}

/** What the runner keeps in a temporary directory (tsx, which runs it here, keeps its cache there too). */
function ours(tmpdir: string): string[] {
  return fs.readdirSync(tmpdir).filter((n) => n.startsWith('pvc-backup-'));
}

/** Waits until the child has sent some of the archive (a progress line past the first part). */
async function midUpload(child: ReturnType<typeof startBackup>): Promise<void> {
  for (;;) {
    const line = await child.next('backup.progress', 'offsite.start');
    if (line.event === 'offsite.start' || (line.bytes as number) > 12 * MiB) return;
  }
}

describe('signals during a bucket upload', () => {
  test('SIGTERM: the upload is aborted before the run exits 143; no object, no multipart upload, no part file left', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const source = await bigSource();
    const tmpdir = await tmp('tmp');
    const child = startBackup(r, source, `s3://${bucket}/p`, { tmpdir });
    await midUpload(child);
    expect(await uploads(r, bucket)).toHaveLength(1);
    // Parts wait in the temporary directory, not in memory.
    expect(ours(tmpdir).filter((n) => n.startsWith('pvc-backup-parts-'))).toHaveLength(1);
    child.proc.kill('SIGTERM');
    await child.exited;
    expect(child.proc.signalCode ?? child.proc.exitCode).toMatch(/^(SIGTERM|143)$/);
    expect(child.events.some((e) => e.event === 'stopped')).toBe(true);
    expect(await uploads(r, bucket)).toEqual([]);
    expect(await listKeys(r.client(), bucket)).toEqual([]);
    expect(ours(tmpdir)).toEqual([]);
  }, 180_000);

  test('SIGKILL: nothing is visible; the next run aborts the leftover upload and succeeds', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const source = await bigSource();
    const child = startBackup(r, source, `s3://${bucket}/p`, { tmpdir: await tmp('tmp') });
    await midUpload(child);
    child.proc.kill('SIGKILL');
    await child.exited;
    expect(await uploads(r, bucket)).toHaveLength(1);
    // The killed run's lock stays until it is stale.
    expect((await listKeys(r.client(), bucket)).filter((k) => !k.includes('.pvc-backup.lock'))).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const next = await runCli(['backup', '--source', source, '--remote', `s3://${bucket}/p`, '--compression', 'none', '--lock-stale-after', '2s', '--log-format', 'json'], {
      timeoutMs: 170_000,
    });
    expect(next.code, next.stdout + next.stderr).toBe(0);
    const lines = jsonLines(next.stdout);
    expect(lines.some((l) => l.event === 'offsite.leftover-removed')).toBe(true);
    expect(await uploads(r, bucket)).toEqual([]);
    const name = lines.at(-1)!.archive as string;
    expect(await listKeys(r.client(), bucket)).toEqual([`p/${name}`, `p/${name}.manifest.json`, `p/${name}.sha256`]);
  }, 240_000);

  test('SIGTERM during the off-site copy (--dest and --remote): the local archive stays, the upload is aborted', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const source = await bigSource();
    const dest = await tmp('dest');
    const tmpdir = await tmp('tmp');
    const child = startBackup(r, source, `s3://${bucket}/p`, { dest, tmpdir });
    await child.next('offsite.start');
    // Let the first parts go out.
    for (let i = 0; i < 50 && (await uploads(r, bucket)).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    child.proc.kill('SIGTERM');
    await child.exited;
    expect(await uploads(r, bucket)).toEqual([]);
    expect((await listKeys(r.client(), bucket)).filter((k) => !k.includes('.pvc-backup.lock'))).toEqual([]);
    const local = fs.readdirSync(dest).filter((n) => /\.tar$/.test(n));
    expect(local).toHaveLength(1);
    expect(ours(tmpdir)).toEqual([]);
    const verify = await runCli(['verify', '--dest', dest]);
    expect(verify.code, verify.stderr).toBe(0);
  }, 240_000);
});
