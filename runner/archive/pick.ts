import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Compression } from '../config.js';
import { IntegrityError, RunnerError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import type { AgeIdentity } from './age/index.js';
import { createDecompressor } from './compress.js';
import { decryptStage } from './encryption.js';
import { normalizeEntryPath } from './safety.js';
import { type EntrySink, type TarEntry, TarReader } from './tar-reader.js';
import { Turns } from './turns.js';

/**
 * Reads one regular file out of an archive into a private spool file, and checks it against
 * the size and SHA-256 the manifest records before anyone may read it. The read stops as soon as
 * the file's data has passed; for a zstd archive it can start at the frame holding the file's
 * first header (`seek`), so the archive before it is neither read nor decoded.
 */

export interface PickRequest {
  /** The archive's bytes from `seek.compressedOffset` on (or from the start without seek). */
  input: Readable;
  compression: Compression;
  identities?: readonly AgeIdentity[];
  /** Root-relative path of the file. */
  rel: string;
  expected: { size: number; sha256: string };
  /** Where decoding starts: a frame boundary, and how many decoded bytes lie before the entry's first header. */
  seek?: { skipBytes: number };
}

export interface PickedFile {
  /** An open, already unlinked spool file holding exactly the checked bytes. */
  fd: number;
  size: number;
  /** Compressed bytes read from the archive. */
  archiveBytesRead: number;
  /** Decoded tar bytes parsed. */
  tarBytesRead: number;
}

class Found extends Error {}

/** A private temporary file that is already unlinked: it disappears with the process. */
function spoolFile(): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-cat-'));
  try {
    const file = path.join(dir, 'data');
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    fs.unlinkSync(file);
    return fd;
  } finally {
    fs.rmdirSync(dir);
  }
}

const REGULAR = new Set(['File', 'OldFile', 'ContiguousFile']);

export async function pickFile(request: PickRequest): Promise<PickedFile> {
  const fd = spoolFile();
  let archiveBytesRead = 0;
  let done = false;
  let written = 0;
  const reader = new TarReader({
    entry(entry: TarEntry): EntrySink | undefined {
      if (done || normalizeEntryPath(entry.path) !== request.rel) return undefined;
      if (!REGULAR.has(entry.type)) throw new IntegrityError(`./${request.rel} is not a regular file in the archive, but the manifest says it is`, 'MANIFEST_MISMATCH');
      // A sparse file's data arrives extent by extent; the holes stay holes of the spool file.
      const extents = entry.sparse ?? [{ offset: 0, length: entry.size }];
      let extent = 0;
      let at = extents[0]?.offset ?? 0;
      let left = extents[0]?.length ?? 0;
      return {
        data(chunk: Buffer) {
          let used = 0;
          while (used < chunk.length) {
            while (left === 0 && extent < extents.length - 1) {
              extent++;
              at = extents[extent]!.offset;
              left = extents[extent]!.length;
            }
            const n = Math.min(left, chunk.length - used);
            if (n === 0) throw new IntegrityError(`./${request.rel}: more data than its extents hold`, 'CORRUPT');
            fs.writeSync(fd, chunk, used, n, at);
            used += n;
            at += n;
            left -= n;
            written += n;
          }
        },
        end() {
          fs.ftruncateSync(fd, entry.size);
          done = true;
        },
      };
    },
  });
  const tap = async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      archiveBytesRead += chunk.length;
      yield chunk;
    }
  };
  let skip = request.seek?.skipBytes ?? 0;
  // Decoded frames are large external buffers the young generation would otherwise keep.
  const governor = new GarbageGovernor();
  let entries = 0;
  const consume = async (source: AsyncIterable<Buffer>) => {
    for await (let chunk of source) {
      if (skip > 0) {
        const cut = Math.min(skip, chunk.length);
        skip -= cut;
        chunk = chunk.subarray(cut);
        if (chunk.length === 0) continue;
      }
      reader.write(chunk);
      governor.processed(chunk.length, reader.entries - entries);
      entries = reader.entries;
      // Stop reading as soon as the file is complete: the rest of the archive is not needed.
      if (done) throw new Found();
    }
  };
  const decompressor = createDecompressor(request.compression);
  const decryptor = request.identities ? decryptStage(request.identities) : undefined;
  const stages = [request.input, tap, ...(decryptor ? [decryptor] : []), ...(decompressor ? [decompressor] : []), consume] as const;
  try {
    try {
      await (pipeline as (...s: unknown[]) => Promise<void>)(...stages);
    } catch (error) {
      if (!(error instanceof Found)) throw error;
    }
    if (!done) throw new IntegrityError(`./${request.rel} is listed in the manifest but the archive ends without it`, 'MANIFEST_MISMATCH');
    if (written > request.expected.size) throw new IntegrityError(`./${request.rel}: the archive holds more bytes than the manifest's size`, 'MANIFEST_MISMATCH');
    await checkSpool(fd, request.rel, request.expected);
  } catch (error) {
    fs.closeSync(fd);
    throw asIntegrity(error);
  }
  return { fd, size: request.expected.size, archiveBytesRead, tarBytesRead: reader.bytes };
}

/**
 * Hashes the spooled bytes; a size or SHA-256 other than the manifest's is an integrity error. The
 * event loop gets a turn between slices: a large file, or a sparse one whose holes read as zeros
 * from the page cache, can take minutes.
 */
async function checkSpool(fd: number, rel: string, expected: { size: number; sha256: string }): Promise<void> {
  const size = fs.fstatSync(fd).size;
  if (size !== expected.size) throw new IntegrityError(`./${rel}: ${size} bytes in the archive, the manifest says ${expected.size}; nothing was written`, 'FILE_MISMATCH');
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  const turns = new Turns();
  for (let position = 0; position < size; ) {
    const n = fs.readSync(fd, buffer, 0, buffer.length, position);
    if (n === 0) break;
    hash.update(buffer.subarray(0, n));
    position += n;
    await turns.done(n);
  }
  const sha256 = hash.digest('hex');
  if (sha256 !== expected.sha256) throw new IntegrityError(`./${rel}: SHA-256 ${sha256} in the archive, the manifest says ${expected.sha256}; the archive is damaged, nothing was written`, 'FILE_MISMATCH');
}

/** Decompression errors from the middle of a damaged archive are integrity failures too. */
function asIntegrity(error: unknown): unknown {
  if (error instanceof RunnerError) return error;
  const e = error as NodeJS.ErrnoException;
  if (e && !e.syscall) return new IntegrityError(`archive is corrupt: ${e.message}`, 'CORRUPT');
  return error;
}
