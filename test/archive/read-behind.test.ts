import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ReadBehind } from '../../runner/archive/read-behind.js';
import { writeAll } from '../../runner/archive/fd-io.js';
import { jsonLines, runCli } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';

const tempDir = useTempDirs();
const KiB = 1024;
const MiB = 1024 * KiB;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A file written in uneven appends, the event loop let run between them, as a backup writes. */
async function writeInPieces(fd: number, content: Buffer, behind: ReadBehind, afterEach?: (written: number) => Promise<void>): Promise<void> {
  let at = 0;
  for (const size of [300 * KiB, 2 * MiB + 5, 1, 700 * KiB, 3 * MiB]) {
    const piece = content.subarray(at, at + size);
    writeAll(fd, piece);
    at += piece.length;
    behind.written(at);
    await afterEach?.(at);
    await sleep(5);
  }
  writeAll(fd, content.subarray(at));
  behind.written(content.length);
}

async function openNew(label: string): Promise<{ file: string; fd: number }> {
  const file = path.join(await tempDir(label), 'archive.partial');
  return { file, fd: fs.openSync(file, 'wx+') };
}

describe('ReadBehind', () => {
  it('reads the file back while it is written, and ends with the checksum and length of all of it', async () => {
    const { file, fd } = await openNew('rb');
    const content = randomBytes(8 * MiB + 123);
    const behind = new ReadBehind(fd);
    // A byte changed once it has been read back is not seen again: proof that the reads run behind the writes, not at the end.
    await writeInPieces(fd, content, behind, async (written) => {
      if (written < 6 * MiB) return;
      // Time enough for the pool to have read the first MiB back, even on a loaded machine.
      await sleep(300);
      fs.writeFileSync(file, Buffer.from([content[0]! ^ 1]), { flag: 'r+' });
    });
    await sleep(50);
    const stored = await behind.end(content.length);
    fs.closeSync(fd);
    expect(stored).toEqual({ sha256: sha256(content), bytes: content.length });
  });

  it('gives another checksum when bytes not yet read back were changed behind the writer', async () => {
    const { file, fd } = await openNew('rb');
    const head = randomBytes(5 * MiB);
    const tail = randomBytes(300 * KiB);
    const behind = new ReadBehind(fd);
    await writeInPieces(fd, head, behind);
    writeAll(fd, tail);
    behind.written(head.length + tail.length);
    // Before the reader runs again: whichever read covers this byte comes later.
    const other = fs.openSync(file, 'r+');
    fs.writeSync(other, Buffer.from([tail[10]! ^ 0xff]), 0, 1, head.length + 10);
    fs.closeSync(other);
    const stored = await behind.end(head.length + tail.length);
    fs.closeSync(fd);
    expect(stored.bytes).toBe(head.length + tail.length);
    expect(stored.sha256).not.toBe(sha256(Buffer.concat([head, tail])));
  });

  it('counts bytes added past the writer, and a tail far past it without reading it', async () => {
    const TiB = 1024 * 1024 * MiB;
    const cases = [
      { grow: (file: string) => fs.appendFileSync(file, 'seven!!'), added: 7 },
      { grow: (file: string) => fs.truncateSync(file, 3 * MiB + TiB), added: TiB },
    ];
    for (const { grow, added } of cases) {
      const { file, fd } = await openNew('rb');
      const content = randomBytes(3 * MiB);
      const behind = new ReadBehind(fd);
      await writeInPieces(fd, content, behind);
      grow(file);
      const started = Date.now();
      const stored = await behind.end(content.length);
      fs.closeSync(fd);
      expect(stored.bytes).toBe(content.length + added);
      // The terabyte of hole is never read.
      expect(Date.now() - started).toBeLessThan(5_000);
    }
  });

  it('reports a file cut short behind the writer with its shorter length', async () => {
    const { file, fd } = await openNew('rb');
    const content = randomBytes(4 * MiB);
    const behind = new ReadBehind(fd);
    await writeInPieces(fd, content, behind);
    fs.truncateSync(file, 3 * MiB + 17);
    const stored = await behind.end(content.length);
    fs.closeSync(fd);
    expect(stored.bytes).toBe(3 * MiB + 17);
  });

  it('stops while it waits for more, with no read left in flight', async () => {
    const { fd } = await openNew('rb');
    const behind = new ReadBehind(fd);
    writeAll(fd, randomBytes(100 * KiB));
    behind.written(100 * KiB);
    await behind.stop();
    fs.closeSync(fd);
    await expect(behind.end(100 * KiB)).rejects.toThrow(/stopped/);
  });
});

describe('a backup whose partial archive is written to by someone else', () => {
  it('fails with the sizes, keeps no archive and leaves nothing behind', { timeout: 120_000 }, async () => {
    const source = await tempDir('rb-src');
    const dest = await tempDir('rb-dest');
    // Random data with gzip: long enough a run (seconds) to find the partial while it is written.
    fs.writeFileSync(path.join(source, 'random.bin'), randomBytes(48 * MiB));
    const run = runCli(['backup', '--source', source, '--dest', dest, '--prefix', 'app', '--compression', 'gzip', '--log-format', 'json']);
    let tampered = false;
    let finished = false;
    void run.then(() => (finished = true));
    while (!tampered && !finished) {
      const partial = fs.readdirSync(dest).find((n) => n.endsWith('.tar.gz.partial'));
      if (partial) {
        // Far past the end: the file grows to 1 GiB and a bit, almost all of it a hole.
        const fd = fs.openSync(path.join(dest, partial), 'r+');
        fs.writeSync(fd, Buffer.from('!'), 0, 1, 1024 * MiB);
        fs.closeSync(fd);
        tampered = true;
      } else {
        await sleep(2);
      }
    }
    const result = await run;
    expect(tampered, 'the backup ended before its partial archive was found').toBe(true);
    expect(result.code).toBe(3);
    const failure = jsonLines(result.stdout).find((l) => l.level === 'error');
    expect(failure?.msg).toMatch(/the file on disk \(1073741825 bytes, sha256 [0-9a-f]{64}\) differs from what was written \(\d+ bytes, sha256 [0-9a-f]{64}\); the archive was not kept/);
    expect(fs.readdirSync(dest).filter((n) => n !== '.pvc-backup.lock')).toEqual([]);
  });
});
