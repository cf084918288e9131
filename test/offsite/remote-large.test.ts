import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { expect, test } from 'vitest';
import { cleanEnv, cliPath, ensureBuilt, jsonLines, repoRoot } from '../helpers/cli.js';
import { useRgw } from '../helpers/rgw.js';
import { useTempDirs } from '../helpers/tree.js';

/**
 * A multi-GiB bucket-only backup through the real CLI, then verify --remote streaming it back:
 * the peak RSS of each run (GNU time's %M) stays bounded, whatever the archive size. The data is
 * real (no holes) and incompressible; RGW keeps it in a sparse file (bluestore), not in RAM.
 */

const RSS_LIMIT_MIB = 200;

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const BYTES = Number(process.env.PVC_BACKUP_TEST_S3_LARGE_BYTES ?? 2 * GiB);
const rgw = useRgw({ objectstore: 'bluestore', storeGb: Math.ceil(BYTES / GiB) + 3 });
const tmp = useTempDirs();
const run = promisify(execFile);

/** Files of up to 256 MiB of incompressible bytes (one random MiB, a counter stamped into each copy). */
function writeSource(dir: string, bytes: number): void {
  const block = randomBytes(MiB);
  let left = bytes;
  for (let file = 0; left > 0; file++) {
    const fd = fs.openSync(path.join(dir, `data-${file}.bin`), 'w');
    for (let i = 0; i < 256 && left > 0; i++, left -= MiB) {
      block.writeUInt32LE(file * 256 + i, 0);
      fs.writeSync(fd, block, 0, Math.min(MiB, left));
    }
    fs.closeSync(fd);
  }
}

async function measured(args: string[]): Promise<{ lines: ReturnType<typeof jsonLines>; maxRssMiB: number; seconds: number }> {
  ensureBuilt();
  const started = Date.now();
  const { stdout, stderr } = await run('/usr/bin/time', ['-f', 'maxrss-kib=%M', process.execPath, cliPath, ...args, '--log-format', 'json'], {
    cwd: repoRoot,
    env: cleanEnv(rgw().env()),
    maxBuffer: 64 * MiB,
    timeout: 1_500_000,
  });
  const kib = Number(/maxrss-kib=(\d+)/.exec(stderr)?.[1]);
  return { lines: jsonLines(stdout), maxRssMiB: kib / 1024, seconds: (Date.now() - started) / 1000 };
}

test(`a ${(BYTES / GiB).toFixed(1)} GiB bucket-only backup and its verify --remote stay within ${RSS_LIMIT_MIB} MiB`, { timeout: 1_800_000 }, async () => {
  const r = rgw();
  const bucket = await r.bucket();
  const source = await tmp('src');
  writeSource(source, BYTES);
  const remote = `s3://${bucket}/big`;

  const backup = await measured(['backup', '--source', source, '--remote', remote, '--compression', 'zstd', '--level', '1']);
  const done = backup.lines.at(-1)!;
  expect(done.event).toBe('backup.done');
  const name = done.archive as string;
  const head = await r.client().send(new HeadObjectCommand({ Bucket: bucket, Key: `big/${name}` }));
  expect(head.ContentLength).toBeGreaterThan(BYTES);
  expect(head.Metadata?.sha256).toBe(done.sha256);

  const verify = await measured(['verify', '--remote', remote]);
  expect(verify.lines.some((l) => l.event === 'verify.ok' && l.archive === name)).toBe(true);

  process.stdout.write(
    `remote-large: ${BYTES} bytes; backup ${backup.seconds.toFixed(1)} s, peak RSS ${backup.maxRssMiB.toFixed(0)} MiB; ` +
      `verify --remote ${verify.seconds.toFixed(1)} s, peak RSS ${verify.maxRssMiB.toFixed(0)} MiB\n`,
  );
  expect(backup.maxRssMiB).toBeLessThan(RSS_LIMIT_MIB);
  expect(verify.maxRssMiB).toBeLessThan(RSS_LIMIT_MIB);
});
