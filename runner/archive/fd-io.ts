import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Writes all of `data` (a write may take less than asked), at `position` or at the file's offset when null. */
export function writeAll(fd: number, data: Uint8Array, position: number | null = null): void {
  let offset = 0;
  while (offset < data.length) {
    offset += fs.writeSync(fd, data, offset, data.length - offset, position === null ? null : position + offset);
  }
}

/** Reads exactly `length` bytes at `position` into the start of `into`; a file that ends sooner is an error. */
export function readExactly(fd: number, into: Buffer, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, into, done, length - done, position + done);
    if (n === 0) throw new Error(`temporary file ended at byte ${position + done}, ${length - done} bytes short`);
    done += n;
  }
}

/** A file in the temporary directory that is already unlinked: it disappears with the descriptor. */
export function openAnonymousFile(): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-index-'));
  const file = path.join(dir, 'index');
  const fd = fs.openSync(file, 'w+', 0o600);
  fs.rmSync(dir, { recursive: true, force: true });
  return fd;
}
