import fs from 'node:fs';
import path from 'node:path';
import { OperationError, RunnerError, describeSystemError } from '../errors.js';
import { count, humanBytes } from '../log.js';
import { type SafeEntry, type SafetyOptions, SafetyRules } from './safety.js';
import type { EntrySink, TarEntry, TarVisitor } from './tar-reader.js';

/**
 * Writes tar entries under a root directory with direct synchronous file-system calls, every
 * entry checked by SafetyRules first (a refused entry throws before anything of it is written).
 *
 * Two modes:
 * - fresh: the root is an empty directory made for this extraction (restore's staging
 *   directory); entries are created with O_EXCL | O_NOFOLLOW and nothing there can be a link
 *   the archive did not create, so the safety rules alone keep every write inside;
 * - merge: the root is a live tree. Files and symlinks are written to a temporary name and
 *   renamed over the old entry (a rename replaces a symlink, never follows it); every parent
 *   directory is checked with lstat once, and a symlink or file found where the archive needs a
 *   directory is replaced by a directory. A directory found where the archive has a file is removed.
 *
 * Modes are exact (the umask is 0 while extracting); owners (numeric uid/gid) are set only
 * with `chown` (running as root). Directory modes and mtimes are applied in `finish`, deepest
 * first, after their contents exist. The root entry (`./`) is not applied to the root: it is
 * kept in `rootMeta` for the caller (restore applies it to the target after the swap).
 */

export interface EntryMeta {
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
}

export interface ExtractOptions {
  /** Absolute path of the directory to extract into; it must exist. */
  root: string;
  /** true: the root holds a live tree (merge); false: the root is a fresh empty directory. */
  merge: boolean;
  /** Set numeric owners from the archive (needs root). */
  chown: boolean;
  /** Top-level names that are never written (with everything below them). */
  skipTopLevel?: (name: string) => boolean;
  /** Called once per skipped top-level entry. */
  onSkip?: (entryPath: string) => void;
  /** Prefix of merge-mode temporary names (must be a reserved name, e.g. restore's control prefix). */
  tempPrefix?: string;
  /** Options of the path-safety rules every entry is checked against. */
  safety?: SafetyOptions;
}

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
const IMPLICIT_DIR_MODE = 0o755;

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException)?.code;
}

export class Extractor implements TarVisitor {
  readonly rules: SafetyRules;
  /** Regular files written, bytes written, all entries created. */
  files = 0;
  bytes = 0;
  entries = 0;
  rootMeta: EntryMeta | undefined;

  private readonly root: string;
  private readonly dirMeta = new Map<string, EntryMeta>();
  /** Directories (relative) known to exist as real directories. */
  private readonly ready = new Set<string>(['']);
  private readonly skipped = new Set<string>();
  private current: FileSink | undefined;
  private savedUmask: number | undefined;
  private tempCounter = 0;
  private readonly tempPrefix: string;
  private closed = false;

  constructor(private readonly options: ExtractOptions) {
    this.root = path.resolve(options.root);
    this.rules = new SafetyRules(options.safety);
    this.tempPrefix = options.tempPrefix ?? `.pvc-backup-extract-${process.pid}`;
    this.savedUmask = process.umask(0);
  }

  entry(entry: TarEntry): EntrySink | undefined {
    const safe = this.rules.check(entry);
    const meta: EntryMeta = { mode: entry.mode & 0o7777, uid: entry.uid, gid: entry.gid, mtime: entry.mtime };
    if (safe.rel === '') {
      this.rootMeta = meta;
      return undefined;
    }
    if (this.options.skipTopLevel) {
      const slash = safe.rel.indexOf('/');
      const top = slash === -1 ? safe.rel : safe.rel.slice(0, slash);
      if (this.options.skipTopLevel(top)) {
        if (!this.skipped.has(top)) {
          this.skipped.add(top);
          this.options.onSkip?.(entry.path);
        }
        return undefined;
      }
    }
    const abs = this.root + '/' + safe.rel;
    try {
      this.ensureParent(safe.rel);
      this.entries++;
      switch (safe.kind) {
        case 'dir':
          this.makeDirectory(safe.rel, abs, meta);
          return undefined;
        case 'file':
          return this.openFile(safe, abs, meta, entry.size);
        case 'symlink':
          this.makeSymlink(abs, entry.linkpath, meta);
          return undefined;
        case 'hardlink':
          this.makeHardLink(abs, this.root + '/' + safe.linkRel!);
          return undefined;
      }
    } catch (error) {
      throw this.wrap(error, entry.path);
    }
  }

  /** Checks the whole-archive safety rules, then applies directory modes and mtimes, deepest first. */
  finish(): void {
    this.rules.finish();
    const dirs = [...this.dirMeta.entries()].map(([rel, meta]) => ({ rel, meta, depth: rel.split('/').length }));
    dirs.sort((a, b) => b.depth - a.depth);
    for (const { rel, meta } of dirs) {
      const abs = this.root + '/' + rel;
      try {
        applyMeta(abs, meta, this.options.chown);
      } catch (error) {
        throw this.wrap(error, `./${rel}/`);
      }
    }
    this.close();
  }

  /** Closes an open file and restores the umask; idempotent. Call on every failure path. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.abandon();
    this.current = undefined;
    if (this.savedUmask !== undefined) process.umask(this.savedUmask);
    this.savedUmask = undefined;
  }

  /** The temporary file of an interrupted merge write, if any (for signal cleanup). */
  get pendingTemp(): string | undefined {
    return this.current?.temp;
  }

  private wrap(error: unknown, entryPath: string): Error {
    if (error instanceof RunnerError) return error;
    const code = errno(error);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new OperationError(
        `the target volume is full: writing ${entryPath} failed after ${humanBytes(this.bytes)} in ${count(this.files, 'file')}; free space or enlarge the volume`,
        'NO_SPACE',
        { cause: error },
      );
    }
    return new OperationError(`restoring ${entryPath} failed: ${describeSystemError(error)}`, 'EXTRACT', { cause: error });
  }

  private ensureParent(rel: string): void {
    const slash = rel.lastIndexOf('/');
    if (slash === -1) return;
    const parent = rel.slice(0, slash);
    if (this.ready.has(parent)) return;
    // Parents the archive did not list (or, in merge mode, not yet checked): top down.
    let next = rel.indexOf('/');
    while (next !== -1 && next <= slash) {
      const ancestor = rel.slice(0, next);
      if (!this.ready.has(ancestor)) this.directoryAt(ancestor, this.root + '/' + ancestor, IMPLICIT_DIR_MODE);
      next = rel.indexOf('/', next + 1);
    }
  }

  /** Makes sure a real directory exists at abs (creating it with createMode), and marks it ready. */
  private directoryAt(rel: string, abs: string, createMode: number): void {
    if (this.options.merge) {
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(abs);
      } catch (error) {
        if (errno(error) !== 'ENOENT') throw error;
      }
      if (st?.isDirectory()) {
        this.ready.add(rel);
        return;
      }
      // A symlink or file where the archive has a directory: the archive wins, and nothing is
      // ever written through a link that was already in the target.
      if (st) fs.unlinkSync(abs);
      fs.mkdirSync(abs, createMode);
      this.ready.add(rel);
      return;
    }
    try {
      fs.mkdirSync(abs, createMode);
    } catch (error) {
      if (errno(error) !== 'EEXIST' || !fs.lstatSync(abs).isDirectory()) throw error;
    }
    this.ready.add(rel);
  }

  private makeDirectory(rel: string, abs: string, meta: EntryMeta): void {
    // Writable and searchable by its owner until finish() applies the real mode.
    if (!this.ready.has(rel)) this.directoryAt(rel, abs, meta.mode | 0o700);
    this.dirMeta.set(rel, meta);
  }

  private tempName(abs: string): string {
    return abs.slice(0, abs.lastIndexOf('/') + 1) + `${this.tempPrefix}.tmp${++this.tempCounter}`;
  }

  private openFile(safe: SafeEntry, abs: string, meta: EntryMeta, size: number): EntrySink {
    const temp = this.options.merge ? this.tempName(abs) : undefined;
    const where = temp ?? abs;
    let fd: number;
    try {
      fd = fs.openSync(where, CREATE_FLAGS, meta.mode & 0o777);
    } catch (error) {
      // A second entry for the same path (appended archives): the later one wins.
      if (errno(error) !== 'EEXIST' || temp) throw error;
      fs.unlinkSync(abs);
      fd = fs.openSync(abs, CREATE_FLAGS, meta.mode & 0o777);
    }
    const sink = new FileSink(this, fd, safe.rel, abs, temp, meta, size);
    this.current = sink;
    return sink;
  }

  /** Called by a file sink once its file is complete. */
  fileDone(sink: FileSink): void {
    if (this.current === sink) this.current = undefined;
    this.files++;
  }

  get chown(): boolean {
    return this.options.chown;
  }

  /** Puts a finished temporary entry in place of whatever is at abs (merge mode). */
  replaceWith(temp: string, abs: string): void {
    try {
      fs.renameSync(temp, abs);
    } catch (error) {
      const code = errno(error);
      if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
      removeTree(abs);
      fs.renameSync(temp, abs);
    }
  }

  private makeSymlink(abs: string, target: string, meta: EntryMeta): void {
    if (this.options.merge) {
      const temp = this.tempName(abs);
      fs.symlinkSync(target, temp);
      try {
        this.symlinkMeta(temp, meta);
        this.replaceWith(temp, abs);
      } catch (error) {
        fs.rmSync(temp, { force: true });
        throw error;
      }
      return;
    }
    try {
      fs.symlinkSync(target, abs);
    } catch (error) {
      if (errno(error) !== 'EEXIST') throw error;
      fs.unlinkSync(abs);
      fs.symlinkSync(target, abs);
    }
    this.symlinkMeta(abs, meta);
  }

  private symlinkMeta(abs: string, meta: EntryMeta): void {
    if (this.options.chown) fs.lchownSync(abs, meta.uid, meta.gid);
    fs.lutimesSync(abs, meta.mtime, meta.mtime);
  }

  private makeHardLink(abs: string, target: string): void {
    try {
      fs.linkSync(target, abs);
    } catch (error) {
      if (errno(error) !== 'EEXIST') throw error;
      if (fs.lstatSync(abs).isDirectory()) removeTree(abs);
      else fs.unlinkSync(abs);
      fs.linkSync(target, abs);
    }
  }
}

class FileSink implements EntrySink {
  private fd: number | undefined;
  constructor(
    private readonly owner: Extractor,
    fd: number,
    readonly rel: string,
    private readonly abs: string,
    readonly temp: string | undefined,
    private readonly meta: EntryMeta,
    private readonly size: number,
  ) {
    this.fd = fd;
  }

  data(chunk: Buffer): void {
    const fd = this.fd!;
    try {
      let offset = 0;
      while (offset < chunk.length) offset += fs.writeSync(fd, chunk, offset, chunk.length - offset);
    } catch (error) {
      throw wrapFileError(this.owner, error, this.rel, this.size);
    }
    this.owner.bytes += chunk.length;
  }

  end(): void {
    const fd = this.fd!;
    const { meta } = this;
    try {
      if (this.owner.chown) fs.fchownSync(fd, meta.uid, meta.gid);
      // open() applied the permission bits; setuid/setgid/sticky need chmod (after chown, which clears them).
      if (meta.mode & 0o7000) fs.fchmodSync(fd, meta.mode);
      fs.futimesSync(fd, meta.mtime, meta.mtime);
      this.fd = undefined;
      fs.closeSync(fd);
      if (this.temp) this.owner.replaceWith(this.temp, this.abs);
    } catch (error) {
      throw wrapFileError(this.owner, error, this.rel, this.size);
    }
    this.owner.fileDone(this);
  }

  /** Closes the descriptor of an unfinished file (and removes a merge temporary). */
  abandon(): void {
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = undefined;
    }
    if (this.temp) fs.rmSync(this.temp, { force: true });
  }
}

function wrapFileError(owner: Extractor, error: unknown, rel: string, size: number): Error {
  if (error instanceof RunnerError) return error;
  const code = errno(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new OperationError(
      `the target volume is full: writing ./${rel} (${humanBytes(size)}) failed after ${humanBytes(owner.bytes)} in ${count(owner.files, 'file')}; free space or enlarge the volume`,
      'NO_SPACE',
      { cause: error },
    );
  }
  return new OperationError(`restoring ./${rel} failed: ${describeSystemError(error)}`, 'EXTRACT', { cause: error });
}

/** Applies owner (optionally), mode and mtime to a directory (or the target root). */
export function applyMeta(abs: string, meta: EntryMeta, chown: boolean): void {
  if (chown) fs.lchownSync(abs, meta.uid, meta.gid);
  fs.chmodSync(abs, meta.mode & 0o7777);
  fs.utimesSync(abs, meta.mtime, meta.mtime);
}

/**
 * Removes a file or a whole tree; as non-root, directories without write or search permission
 * for their owner are made accessible first (a restored tree may hold 0555 directories).
 */
export function removeTree(abs: string): void {
  try {
    fs.rmSync(abs, { recursive: true, force: true });
    return;
  } catch (error) {
    const code = errno(error);
    if (code !== 'EACCES' && code !== 'EPERM') throw error;
  }
  makeOwnerAccessible(abs);
  fs.rmSync(abs, { recursive: true, force: true });
}

function makeOwnerAccessible(abs: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(abs);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  if ((st.mode & 0o700) !== 0o700) {
    try {
      fs.chmodSync(abs, (st.mode & 0o7777) | 0o700);
    } catch {
      return;
    }
  }
  let names: string[];
  try {
    names = fs.readdirSync(abs);
  } catch {
    return;
  }
  for (const name of names) makeOwnerAccessible(abs + '/' + name);
}
