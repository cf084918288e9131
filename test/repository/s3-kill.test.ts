import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { afterEach, expect, test } from 'vitest';
import { cleanEnv, ensureBuilt, repoRoot } from '../helpers/cli.js';
import { type Rgw, useRgw } from '../helpers/rgw.js';
import { useTempDirs } from '../helpers/tree.js';
import { listKeys } from './support.js';

/**
 * A bucket-only upload killed mid-way by a real signal, in a real child process: no object
 * ever becomes visible, and the next run aborts what the killed one left.
 */

const rgw = useRgw();
const tmp = useTempDirs();
const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'upload-child.mjs');
const running = new Set<ChildProcessWithoutNullStreams>();

afterEach(() => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  running.clear();
});

interface Run {
  proc: ChildProcessWithoutNullStreams;
  lines: Record<string, unknown>[];
  /** Resolves with the first line matching. */
  until(predicate: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The child's temporary directory (its part files) is the test's own, removed after the test. */
async function start(r: Rgw, args: string[]): Promise<Run> {
  ensureBuilt();
  const proc = spawn(process.execPath, [child, ...args], { cwd: repoRoot, env: cleanEnv({ ...r.env(), TMPDIR: await tmp('tmp') }), stdio: 'pipe' });
  running.add(proc);
  const lines: Record<string, unknown>[] = [];
  const watchers: { predicate: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buffered = '';
  let stderr = '';
  proc.stderr.on('data', (c) => (stderr += String(c)));
  proc.stdout.on('data', (c) => {
    buffered += String(c);
    for (let i = buffered.indexOf('\n'); i !== -1; i = buffered.indexOf('\n')) {
      const line = JSON.parse(buffered.slice(0, i)) as Record<string, unknown>;
      buffered = buffered.slice(i + 1);
      lines.push(line);
      for (const w of [...watchers]) if (w.predicate(line)) (watchers.splice(watchers.indexOf(w), 1), w.resolve(line));
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  return {
    proc,
    lines,
    exit,
    until: (predicate) =>
      new Promise((resolve, reject) => {
        const seen = lines.find(predicate);
        if (seen) return resolve(seen);
        watchers.push({ predicate, resolve });
        void exit.then(({ code, signal }) => reject(new Error(`child ended (${code ?? signal}) before the line: ${stderr} ${JSON.stringify(lines)}`)));
      }),
  };
}

async function uploads(r: Rgw, bucket: string): Promise<string[]> {
  return ((await r.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map((u) => u.Key!);
}

const NAME = 'backup-20240101T000000Z.tar.zst';
const BYTES = String(400 * 1024 * 1024);

test('SIGKILL mid-upload: nothing visible; the next run breaks the dead run\'s lock and aborts its upload', async () => {
  const r = rgw();
  const bucket = await r.bucket();
  const url = `s3://${bucket}/pvc`;
  const first = await start(r, [url, NAME, BYTES]);
  await first.until((l) => l.event === 'progress' && (l.bytes as number) >= 40 * 1024 * 1024);
  first.proc.kill('SIGKILL');
  expect((await first.exit).signal).toBe('SIGKILL');

  expect(await listKeys(r.client(), bucket)).toEqual(['pvc/.pvc-backup.lock']); // the dead run's lock, no archive
  expect(await uploads(r, bucket)).toEqual([`pvc/${NAME}`]);

  const second = await start(r, [url, 'backup-20240101T000001Z.tar.zst', String(1024 * 1024)]);
  const warning = await second.until((l) => l.event === 'warning');
  expect(warning.message).toMatch(new RegExp(`breaking stale lock .* held by backup .*pid ${first.proc.pid}\\): process ${first.proc.pid} on this host no longer runs`));
  expect((await second.until((l) => l.event === 'leftovers')).names).toEqual([NAME]);
  expect((await second.exit).code).toBe(0);
  expect(await uploads(r, bucket)).toEqual([]);
  expect(await listKeys(r.client(), bucket)).toEqual([
    'pvc/backup-20240101T000001Z.tar.zst',
    'pvc/backup-20240101T000001Z.tar.zst.manifest.json',
    'pvc/backup-20240101T000001Z.tar.zst.sha256',
  ]);
});

test('SIGTERM mid-upload: the run aborts its own upload and removes its lock before it exits', async () => {
  const r = rgw();
  const bucket = await r.bucket();
  const run = await start(r, [`s3://${bucket}/pvc`, NAME, BYTES]);
  await run.until((l) => l.event === 'progress' && (l.bytes as number) >= 40 * 1024 * 1024);
  expect(await uploads(r, bucket)).toEqual([`pvc/${NAME}`]);
  run.proc.kill('SIGTERM');
  expect((await run.exit).code).toBe(143);
  expect(run.lines.at(-1)?.event).toBe('stopped');
  expect(await uploads(r, bucket)).toEqual([]);
  expect(await listKeys(r.client(), bucket)).toEqual([]);
});
