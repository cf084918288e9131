import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { writeUstar } from '../../runner/archive/ustar.js';
import { cleanEnv, cliPath, jsonLines, runCli } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';

/**
 * A hostile archive must not take restore's memory with it: a small .tar.gz of a million empty
 * entries (plus symlinks, hard links and implicit parents) whose last entry escapes the target.
 * Restore reads all of it, refuses it (exit 3) and writes nothing; its safety pass holds a few
 * bytes per entry, not the names (this took 490 MiB before it was bounded).
 */

const tempDir = useTempDirs();
const ENTRIES = 1_000_000;

async function hostileArchive(file: string): Promise<void> {
  const gzip = zlib.createGzip({ level: 1 });
  const out = fs.createWriteStream(file);
  gzip.pipe(out);
  const batch = Buffer.alloc(512 * 2048);
  let at = 0;
  const put = (fields: Parameters<typeof writeUstar>[2]) => {
    writeUstar(batch, at, fields);
    at += 512;
    if (at === batch.length) {
      gzip.write(Buffer.from(batch));
      at = 0;
    }
  };
  const base = { mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, linkname: '' };
  const nameOf = (i: number) => `./${(i * 7919) % 1000}/${'n'.repeat(40)}-${i}`;
  for (let i = 0; i < ENTRIES; i++) {
    const name = nameOf(i);
    if (i % 10 === 9) put({ ...base, name, type: 'SymbolicLink', linkname: `../${i % 1000}/x` });
    else if (i % 10 === 8) put({ ...base, name, type: 'Link', linkname: nameOf(i - 1) });
    else put({ ...base, name, type: 'File' });
  }
  put({ ...base, name: './../escaped', type: 'File' });
  gzip.write(Buffer.from(batch.subarray(0, at)));
  gzip.end(Buffer.alloc(1024));
  await new Promise<void>((resolve) => out.on('close', () => resolve()));
}

describe('a hostile archive of a million entries', () => {
  it('is refused after a full read with bounded memory, and nothing is written', async () => {
    const dest = await tempDir('dest');
    const file = path.join(dest, 'hostile.tar.gz');
    await hostileArchive(file);
    expect(fs.statSync(file).size).toBeLessThan(16 * 1024 * 1024);
    const target = await tempDir('target');
    const timing = path.join(dest, '..', `${path.basename(dest)}.rss`);
    let code = 0;
    let stdout = '';
    try {
      stdout = execFileSync('/usr/bin/time', ['-f', '%M', '-o', timing, process.execPath, cliPath, 'restore', '--dest', dest, '--archive', 'hostile.tar.gz', '--target', target, '--allow-unverified', '--no-snapshot', '--log-format', 'json'], {
        env: cleanEnv(),
        maxBuffer: 1 << 26,
      }).toString();
    } catch (error) {
      code = (error as { status: number }).status;
      stdout = String((error as { stdout: Buffer }).stdout);
    }
    const peakMiB = Number(fs.readFileSync(timing, 'utf8').trim().split('\n').pop()) / 1024;
    fs.rmSync(timing, { force: true });
    expect(code, stdout.slice(-2000)).toBe(3);
    expect(jsonLines(stdout).find((l) => l.level === 'error')?.msg).toMatch(/escaped.*"\.\." component/);
    expect(fs.readdirSync(target)).toEqual([]);
    console.log(`[memory] hostile archive of ${ENTRIES} entries refused with a peak RSS of ${peakMiB.toFixed(1)} MiB`);
    expect(peakMiB).toBeLessThan(150);
    // Sanity: the same archive minus its last entry would have been a real restore.
    expect((await runCli(['list', '--dest', dest])).code).toBe(0);
  }, 600_000);
});
