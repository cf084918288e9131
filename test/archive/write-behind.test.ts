import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { WriteBehind } from '../../runner/archive/write-behind.js';
import { useTempDirs } from '../helpers/tree.js';

const tempDir = useTempDirs();
const KiB = 1024;

describe('WriteBehind', () => {
  it('puts every piece at its position, in whatever order the pool finishes them, and holds the producer above its limit', async () => {
    const file = path.join(await tempDir('wb'), 'out.bin');
    const fd = fs.openSync(file, 'w');
    const behind = new WriteBehind(256 * KiB);
    const content = randomBytes(64 * 64 * KiB + 3);
    const writes: Promise<void>[] = [];
    let waits = 0;
    for (let at = 0; at < content.length; at += 64 * KiB) {
      writes.push(behind.write(fd, content.subarray(at, at + 64 * KiB), at));
      const wait = behind.backpressure();
      if (wait) {
        waits++;
        await wait;
        // Woken once no more than half the limit is in flight.
        expect(behind.backpressure()).toBeUndefined();
      }
    }
    await Promise.all(writes);
    fs.closeSync(fd);
    expect(waits).toBeGreaterThan(0);
    expect(fs.readFileSync(file).equals(content)).toBe(true);
  });

  it('rejects a failed write with the system error, and counts it as done', async () => {
    const file = path.join(await tempDir('wb'), 'read-only.bin');
    fs.writeFileSync(file, '');
    const fd = fs.openSync(file, 'r');
    const behind = new WriteBehind(1);
    const failed = behind.write(fd, Buffer.alloc(4 * KiB), 0);
    expect(behind.backpressure()).toBeInstanceOf(Promise);
    await expect(failed).rejects.toMatchObject({ code: 'EBADF' });
    expect(behind.backpressure()).toBeUndefined();
    fs.closeSync(fd);
  });
});
