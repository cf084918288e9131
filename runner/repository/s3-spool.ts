import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { writeAll } from '../archive/fd-io.js';
import { describeSystemError, OperationError } from '../errors.js';

/**
 * Parts of a multipart upload wait in the temporary directory, not in memory: a part's
 * Content-MD5 must be known before its first byte is sent, so every part is complete somewhere
 * before it goes out. In memory that costs (parts in flight + 1) × part size, 40 MiB for 8 MiB
 * parts and 120 MiB for the 60 MiB parts of a 500 GiB plan; on disk it costs only stream
 * buffers, whatever the part size. A part's file is removed as soon as the store has it, the
 * directory when the upload finishes or is aborted; the disk use is at most the parts in flight
 * plus the one being filled (s3-parts.ts: PART_SPOOL_BYTES).
 */

const READ_CHUNK_BYTES = 256 * 1024;

export class PartSpool {
  private dir: string | undefined;

  constructor(
    /** For messages: what is being uploaded. */
    private readonly label: string,
    private readonly parent: string = os.tmpdir(),
  ) {}

  /** A new, empty part file (the spool's directory is made with the first one). */
  create(partNumber: number): SpooledPart {
    return this.guard(partNumber, () => {
      this.dir ??= fs.mkdtempSync(path.join(this.parent, 'pvc-backup-parts-'));
      return new SpooledPart(path.join(this.dir, `part-${partNumber}`), (action) => this.guard(partNumber, action));
    });
  }

  /** Removes the directory and whatever part files are left in it. Never throws. */
  remove(): void {
    if (!this.dir) return;
    try {
      fs.rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // Left in the temporary directory; the upload's outcome does not depend on it.
    }
    this.dir = undefined;
  }

  private guard<T>(partNumber: number, action: () => T): T {
    try {
      return action();
    } catch (error) {
      throw new OperationError(
        `${this.label}: cannot keep upload part ${partNumber} in the temporary directory ${this.dir ?? this.parent}: ${describeSystemError(error)}; ` +
          'free space there or point TMPDIR at a directory with room for a few parts',
        'S3_SPOOL',
        { cause: error },
      );
    }
  }
}

/** One part on disk: written and hashed as it fills, then sealed and read back for each attempt. */
export class SpooledPart {
  length = 0;
  private fd: number | undefined;
  private readonly hash: Hash = createHash('md5');
  private digest: string | undefined;

  constructor(
    readonly file: string,
    private readonly guard: <T>(action: () => T) => T,
  ) {
    this.fd = fs.openSync(file, 'wx', 0o600);
  }

  write(chunk: Uint8Array): void {
    this.guard(() => {
      writeAll(this.fd!, chunk);
    });
    this.hash.update(chunk);
    this.length += chunk.length;
  }

  /** Closes the file; returns the part's MD5 (base64, as Content-MD5 wants it). */
  seal(): string {
    if (this.digest === undefined) {
      this.close();
      this.digest = this.hash.digest('base64');
    }
    return this.digest;
  }

  /** A fresh stream of the sealed part's bytes (one per attempt: a sent stream cannot be sent again). */
  body(): Readable {
    return fs.createReadStream(this.file, { highWaterMark: READ_CHUNK_BYTES });
  }

  /** Closes and deletes the file. Never throws. */
  discard(): void {
    try {
      this.close();
    } catch {
      // The file goes anyway.
    }
    try {
      fs.rmSync(this.file, { force: true });
    } catch {
      // The directory goes with PartSpool.remove().
    }
  }

  private close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    this.guard(() => fs.closeSync(fd));
  }
}
