import fs from 'node:fs';
import { Header, Pax } from 'tar';
import { OperationError, describeSystemError } from '../errors.js';
import type { BufferPool } from './buffer-pool.js';
import { ContentHash } from './hash.js';
import type { ManifestFile } from './manifest.js';
import { type ExcludeMatcher, type WalkEntry, entryKind, specialFileName, walkTree } from './walk.js';

/**
 * Turns a directory tree into a tar stream (POSIX ustar + pax headers, encoded by node-tar's
 * Header and Pax), reading every file exactly once: the bytes land directly in the output
 * batch and are hashed there for the manifest. Output comes in chunks of the pool's buffer size.
 */

const BLOCK = 512;

export interface PackOptions {
  source: string;
  exclude: ExcludeMatcher;
  /** Skip what cannot be archived (with a warning) instead of failing. */
  skipUnreadable: boolean;
  /** Where output chunks come from; its buffer size is the chunk size. */
  pool: BufferPool;
}

export interface PackWarning {
  path: string;
  problem: string;
}

export class TarPacker {
  readonly files: ManifestFile[] = [];
  readonly warnings: PackWarning[] = [];
  /** File content bytes read so far (for progress). */
  bytesRead = 0;
  /** Uncompressed tar bytes produced so far. */
  tarBytes = 0;

  private readonly pool: BufferPool;
  private readonly batch: number;
  private out: Buffer;
  private pos = 0;
  private readonly ready: Buffer[] = [];
  private readonly hardLinks = new Map<string, string>();
  private aborted: Error | undefined;

  constructor(private readonly options: PackOptions) {
    this.pool = options.pool;
    this.batch = options.pool.size;
    this.out = this.pool.take();
  }

  /** Stops the packer at its next chunk boundary (e.g. on SIGTERM). */
  abort(reason: Error): void {
    this.aborted = reason;
  }

  *chunks(): Generator<Buffer> {
    for (const entry of walkTree(this.options.source, this.options.exclude)) {
      if (this.aborted) throw this.aborted;
      yield* this.packEntry(entry);
      yield* this.takeReady();
    }
    this.zeros(2 * BLOCK);
    this.flush();
    yield* this.takeReady();
  }

  private *takeReady(): Generator<Buffer> {
    while (this.ready.length > 0) yield this.ready.shift()!;
  }

  private problem(rel: string, problem: string, hint: string): void {
    const shown = rel === '' ? '.' : rel;
    if (!this.options.skipUnreadable) {
      throw new OperationError(`cannot archive ./${shown === '.' ? '' : shown}: ${problem}; ${hint}`, 'SOURCE_UNREADABLE');
    }
    this.warnings.push({ path: `./${rel}`, problem: `skipped: ${problem}` });
  }

  private *packEntry(entry: WalkEntry): Generator<Buffer> {
    const { rel, abs } = entry;
    if (entry.error) {
      if (entry.error.code === 'ENOENT') {
        this.warnings.push({ path: `./${rel}`, problem: 'vanished while the backup ran' });
        return;
      }
      if (entry.error.code === 'ENOTDIR') {
        // Listed as a directory, replaced by something else before it could be read.
        this.warnings.push({ path: `./${rel}`, problem: 'was replaced by a non-directory while the backup ran; its contents are not in the archive' });
        return;
      }
      this.problem(rel, describeSystemError(entry.error), UNREADABLE_HINT);
      return;
    }
    const stat = entry.stat!;
    const kind = entryKind(stat);
    if (kind === undefined) {
      this.problem(rel, `is a ${specialFileName(stat)}, which a backup cannot hold`, 'exclude it with --exclude or pass --skip-unreadable');
      return;
    }
    const base = {
      mode: stat.mode & 0o7777,
      uid: stat.uid,
      gid: stat.gid,
      mtime: Math.floor(stat.mtimeMs / 1000),
    };
    if (kind === 'dir') {
      const path = rel === '' ? './' : `./${rel}/`;
      this.header({ path, type: 'Directory', size: 0, ...base });
      this.files.push({ path, type: 'dir', size: 0, ...base });
      return;
    }
    const path = `./${rel}`;
    if (kind === 'symlink') {
      let target: string;
      try {
        target = fs.readlinkSync(abs);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'EINVAL') {
          this.warnings.push({ path, problem: code === 'ENOENT' ? 'vanished while the backup ran' : 'was replaced by a non-symlink while the backup ran; skipped' });
          return;
        }
        this.problem(rel, describeSystemError(error), UNREADABLE_HINT);
        return;
      }
      if (target.startsWith('/')) {
        this.warnings.push({ path, problem: `is a symlink to the absolute path ${target}; pvc-backup restore refuses links that point outside the target unless --allow-absolute-symlinks (chart: restore.allowAbsoluteSymlinks) asks to recreate them as they are, so make it relative or restore with that flag` });
      }
      this.header({ path, type: 'SymbolicLink', size: 0, linkpath: target, ...base });
      this.files.push({ path, type: 'symlink', size: 0, linkTarget: target, ...base });
      return;
    }
    const linkKey = stat.nlink > 1 ? `${stat.dev}:${stat.ino}` : undefined;
    const firstPath = linkKey ? this.hardLinks.get(linkKey) : undefined;
    if (firstPath !== undefined) {
      this.header({ path, type: 'Link', size: 0, linkpath: firstPath, ...base });
      this.files.push({ path, type: 'hardlink', size: 0, linkTarget: firstPath, ...base });
      return;
    }
    yield* this.packFile(entry, path, linkKey);
  }

  private *packFile(entry: WalkEntry, path: string, linkKey: string | undefined): Generator<Buffer> {
    let fd: number;
    try {
      // O_NONBLOCK: a regular file replaced by a FIFO after it was listed must not block the run
      // forever in open(); the type is checked on the opened descriptor below.
      fd = fs.openSync(entry.abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.warnings.push({ path, problem: 'vanished while the backup ran' });
        return;
      }
      if (code === 'ELOOP' || code === 'ENXIO' || code === 'ENOTDIR') {
        // Listed as a regular file, replaced (by a symlink, a socket, …) before it was opened.
        this.warnings.push({ path, problem: 'was replaced by something other than a regular file while the backup ran; skipped' });
        return;
      }
      this.problem(entry.rel, describeSystemError(error), UNREADABLE_HINT);
      return;
    }
    try {
      const before = fs.fstatSync(fd);
      if (!before.isFile()) {
        const kind = before.isDirectory() ? 'directory' : specialFileName(before);
        this.warnings.push({ path, problem: `was replaced by a ${kind} while the backup ran; skipped` });
        return;
      }
      const size = before.size;
      const meta = {
        mode: before.mode & 0o7777,
        uid: before.uid,
        gid: before.gid,
        mtime: Math.floor(before.mtimeMs / 1000),
      };
      this.header({ path, type: 'File', size, ...meta });
      const hash = new ContentHash();
      let remaining = size;
      let shrank = false;
      while (remaining > 0) {
        const want = Math.min(this.batch - this.pos, remaining);
        let n: number;
        try {
          n = fs.readSync(fd, this.out, this.pos, want, null);
        } catch (error) {
          // The header is out already: keep the archive consistent and say the content is incomplete.
          throw new OperationError(`reading ./${entry.rel} failed: ${describeSystemError(error)}`, 'SOURCE_READ');
        }
        if (n === 0) {
          this.warnings.push({ path, problem: `shrank from ${size} to ${size - remaining} bytes while being read; the rest is zero-filled` });
          shrank = true;
          while (remaining > 0) {
            const z = Math.min(this.batch - this.pos, remaining);
            this.out.fill(0, this.pos, this.pos + z);
            hash.update(this.out.subarray(this.pos, this.pos + z));
            this.pos += z;
            remaining -= z;
            if (this.pos === this.batch) {
              this.flush();
              yield* this.takeReady();
            }
          }
          break;
        }
        hash.update(this.out.subarray(this.pos, this.pos + n));
        this.pos += n;
        remaining -= n;
        this.bytesRead += n;
        if (this.pos === this.batch) {
          this.flush();
          yield* this.takeReady();
        }
      }
      this.padToBlock(size);
      const after = fs.fstatSync(fd);
      if (!shrank && (after.size !== size || after.mtimeMs !== before.mtimeMs)) {
        this.warnings.push({ path, problem: `changed while being read (size ${size} -> ${after.size}); the archive holds the bytes that were read` });
      }
      if (linkKey) this.hardLinks.set(linkKey, path);
      this.files.push({ path, type: 'file', size, ...meta, sha256: hash.digest() });
    } finally {
      fs.closeSync(fd);
    }
  }

  private header(fields: { path: string; type: string; size: number; mode: number; uid: number; gid: number; mtime: number; linkpath?: string }): void {
    const linkpath = fields.linkpath ?? '';
    // Names that plain ustar cannot hold exactly go into a pax header; the ustar fields then get
    // a short ASCII stand-in (never ustar's prefix split, which tars read back differently).
    const longPath = !fitsUstar(fields.path);
    const longLink = !fitsUstar(linkpath);
    const block = Buffer.alloc(BLOCK);
    const header = new Header({
      path: longPath ? standIn(fields.path) : fields.path,
      type: fields.type as never,
      size: fields.size,
      mode: fields.mode,
      uid: fields.uid,
      gid: fields.gid,
      mtime: new Date(fields.mtime * 1000),
      linkpath: longLink ? standIn(linkpath) : linkpath,
      uname: '',
      gname: '',
    });
    const numbersNeedPax = header.encode(block);
    if (longPath || longLink || numbersNeedPax) {
      const pax = new Pax({
        path: fields.path,
        linkpath: linkpath || undefined,
        size: fields.size > 0o77777777777 ? fields.size : undefined,
        uid: fields.uid > 0o7777777 ? fields.uid : undefined,
        gid: fields.gid > 0o7777777 ? fields.gid : undefined,
      });
      this.put(pax.encode());
    }
    this.put(block);
  }

  private put(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) {
      const n = Math.min(data.length - offset, this.batch - this.pos);
      data.copy(this.out, this.pos, offset, offset + n);
      this.pos += n;
      offset += n;
      if (this.pos === this.batch) this.flush();
    }
  }

  private zeros(count: number): void {
    let left = count;
    while (left > 0) {
      const n = Math.min(left, this.batch - this.pos);
      this.out.fill(0, this.pos, this.pos + n);
      this.pos += n;
      left -= n;
      if (this.pos === this.batch) this.flush();
    }
  }

  private padToBlock(size: number): void {
    const rest = size % BLOCK;
    if (rest !== 0) this.zeros(BLOCK - rest);
  }

  private flush(): void {
    if (this.pos === 0) return;
    this.ready.push(this.pos === this.batch ? this.out : this.out.subarray(0, this.pos));
    this.tarBytes += this.pos;
    this.out = this.pool.take();
    this.pos = 0;
  }
}

function fitsUstar(name: string): boolean {
  return name.length < 100 && /^[\x20-\x7e]*$/.test(name);
}

function standIn(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, '_').slice(0, 99);
}

const UNREADABLE_HINT = 'fix its permissions, run as root (the chart adds CAP_DAC_READ_SEARCH), exclude it with --exclude, or pass --skip-unreadable';
