import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { expect, test } from 'vitest';
import { cleanEnv, ensureBuilt, repoRoot } from '../helpers/cli.js';
import { useRgw } from '../helpers/rgw.js';

/**
 * A multi-GiB bucket-only upload streamed from a child process, then streamed back: the
 * child's peak RSS must stay bounded (it does not grow with the archive). RGW keeps the data
 * in a sparse file here (bluestore), not in RAM.
 */

const GiB = 1024 ** 3;
const BYTES = Number(process.env.PVC_BACKUP_TEST_S3_LARGE_BYTES ?? 3 * GiB);
const rgw = useRgw({ objectstore: 'bluestore', storeGb: Math.ceil(BYTES / GiB) + 3 });
const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'upload-child.mjs');
const run = promisify(execFile);

async function runChild(args: string[]): Promise<Record<string, unknown>> {
  ensureBuilt();
  const { stdout } = await run(process.execPath, [child, ...args], { cwd: repoRoot, env: cleanEnv(rgw().env()), maxBuffer: 64 * 1024 * 1024, timeout: 900_000 });
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  return lines.at(-1)!;
}

test(`a ${(BYTES / GiB).toFixed(1)} GiB streamed upload and its read-back stay within bounded memory`, { timeout: 900_000 }, async () => {
  const r = rgw();
  const bucket = await r.bucket();
  const url = `s3://${bucket}/big`;
  const name = 'backup-20240101T000000Z.tar.zst';

  const started = Date.now();
  const up = await runChild([url, name, String(BYTES)]);
  const upSeconds = (Date.now() - started) / 1000;
  expect(up.event).toBe('done');
  expect(up.bytes).toBe(BYTES);
  const head = await r.client().send(new HeadObjectCommand({ Bucket: bucket, Key: `big/${name}` }));
  expect(head.ContentLength).toBe(BYTES);
  expect(head.Metadata?.sha256).toBe(up.sha256);

  const readStarted = Date.now();
  const down = await runChild([url, name, 'read']);
  const downSeconds = (Date.now() - readStarted) / 1000;
  expect(down).toMatchObject({ event: 'done', size: BYTES, bytes: BYTES, sha256: up.sha256 });

  const mib = (kib: unknown) => (kib as number) / 1024;
  process.stdout.write(
    `s3-large: ${BYTES} bytes; upload ${upSeconds.toFixed(1)} s (${(BYTES / 1e6 / upSeconds).toFixed(0)} MB/s), peak RSS ${mib(up.maxRssKiB).toFixed(0)} MiB; ` +
      `read-back ${downSeconds.toFixed(1)} s (${(BYTES / 1e6 / downSeconds).toFixed(0)} MB/s), peak RSS ${mib(down.maxRssKiB).toFixed(0)} MiB\n`,
  );
  expect(mib(up.maxRssKiB)).toBeLessThan(200);
  expect(mib(down.maxRssKiB)).toBeLessThan(200);
});
