import fs from 'node:fs';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isPartialName, partialName } from './naming.js';

/**
 * Crash-safe writes into the backup directory. A file appears under its final name only
 * once its bytes are on disk: it is written as `.<name>.partial`, fsynced, renamed into
 * place, and the directory is fsynced so the rename itself survives a power cut.
 */

/** Flushes a directory's entries (creations, renames, deletions) to disk. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems (and platforms) cannot fsync a directory; the rename is still atomic there.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR' && code !== 'EBADF') throw error;
  } finally {
    await handle.close();
  }
}

/**
 * Writes `data` to `dir/name` atomically: readers see the old file (or none) until the new
 * one is complete. Replaces an existing file of that name. On failure the partial file is
 * removed and the error rethrown; the final name is never left half-written.
 */
export async function writeFileAtomic(dir: string, name: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
  if (name.includes('/') || name === '' || name === '.' || name === '..') throw new Error(`writeFileAtomic: "${name}" is not a plain file name`);
  const partial = path.join(dir, partialName(name));
  let committed = false;
  try {
    const handle = await open(partial, 'w', options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(partial, path.join(dir, name));
    committed = true;
    await fsyncDirectory(dir);
  } catch (error) {
    if (!committed) await unlink(partial).catch(() => undefined);
    throw error;
  }
}

/**
 * writeFileAtomic with synchronous system calls, for small files a signal handler must be able
 * to clean up: the handler runs between JavaScript steps, so it always sees the partial (or
 * none) and never misses one that an async open still in flight would create after it ran.
 */
export function writeFileAtomicSync(dir: string, name: string, data: string | Uint8Array, options: { mode?: number } = {}): void {
  writeFileAtomicSyncWith(dir, name, (fd) => fs.writeFileSync(fd, data), options);
}

/** writeFileAtomicSync with the content written by `fill` into the partial's descriptor (for content streamed from elsewhere). */
export function writeFileAtomicSyncWith(dir: string, name: string, fill: (fd: number) => void, options: { mode?: number } = {}): void {
  if (name.includes('/') || name === '' || name === '.' || name === '..') throw new Error(`writeFileAtomicSync: "${name}" is not a plain file name`);
  const partial = path.join(dir, partialName(name));
  let committed = false;
  try {
    const fd = fs.openSync(partial, 'w', options.mode ?? 0o644);
    try {
      fill(fd);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(partial, path.join(dir, name));
    committed = true;
    fsyncDirectorySync(dir);
  } catch (error) {
    if (!committed) fs.rmSync(partial, { force: true });
    throw error;
  }
}

/** Flushes a directory's entries to disk; file systems that cannot fsync a directory are tolerated. */
export function fsyncDirectorySync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR' && code !== 'EBADF') throw error;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Deletes every leftover `.<name>.partial` regular file directly in `dir` and returns the
 * names removed (sorted). Call it only while holding the directory lock: then no other run
 * is writing, and every partial is debris of a run that was killed.
 */
export async function removeLeftoverPartials(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const removed: string[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !isPartialName(entry.name)) continue;
    try {
      await unlink(path.join(dir, entry.name));
      removed.push(entry.name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  if (removed.length > 0) await fsyncDirectory(dir);
  return removed.sort();
}

/**
 * Like writeFileAtomic, from a stream or a local file (a manifest can be tens of MB): the bytes go
 * to the hidden partial, which is fsynced and then renamed into place.
 */
export async function writeStreamAtomic(dir: string, name: string, source: Readable | { file: string }, options: { mode?: number } = {}): Promise<void> {
  if (name.includes('/') || name === '' || name === '.' || name === '..') throw new Error(`writeStreamAtomic: "${name}" is not a plain file name`);
  const partial = path.join(dir, partialName(name));
  let committed = false;
  try {
    const input = 'file' in source ? fs.createReadStream(source.file) : source;
    // flush: the file is fsynced before it is closed, so the rename publishes bytes that are on disk.
    await pipeline(input, fs.createWriteStream(partial, { mode: options.mode ?? 0o644, flush: true }));
    await rename(partial, path.join(dir, name));
    committed = true;
    await fsyncDirectory(dir);
  } catch (error) {
    if (!committed) await unlink(partial).catch(() => undefined);
    throw error;
  }
}
