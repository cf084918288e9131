import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OperationError, RunnerError, describeSystemError } from '../errors.js';
import { count, humanBytes } from '../log.js';
import { DeferredDirectories } from './deferred-dirs.js';
import { writeAll } from './fd-io.js';
import { DirectoryBase, TreePaths } from './long-paths.js';
import { displayName, encodeName, fsPath } from './names.js';
import { type Time, formatPaxTime } from './pax.js';
import { type SafeEntry, type SafetyOptions, SafetyRules } from './safety.js';
import { SparseCursor } from './sparse.js';
import { type ApplyFailure, ERRNO, type HelperPool, type Xattr, errnoName } from './syscall-helper.js';
import type { EntrySink, TarEntry, TarVisitor } from './tar-reader.js';
import { sortedNames } from './listing.js';
import { WriteBehind } from './write-behind.js';
import { ACL_ACCESS, CAPABILITY, aclGroupLimit, aclsToDrop } from './xattrs.js';

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
 *   directory is checked with lstat, and a symlink or file found where the archive needs a
 *   directory is replaced by a directory. A directory found where the archive has a file is removed.
 *
 * Names are bytes (names.ts) and paths may be of any depth (long-paths.ts). Sparse files are
 * written with their holes (the data at its offsets, then the size). Modes are exact (the umask
 * is 0 while extracting); owners (numeric uid/gid) are set only with `chown` (running as root).
 * Extended attributes (ACLs, capabilities) and times to the nanosecond are set through the
 * system-call helper after the file is complete, in order (a capability after the chown that
 * would clear it, the times last); an attribute the target cannot hold is a warning naming the
 * file. Directory modes, attributes and mtimes are applied in `finish`, after their contents
 * exist, deepest first. The root entry (`./`) is not applied to the root: it is kept in
 * `rootMeta` for the caller (restore applies it to the target after the swap).
 */

export interface EntryMeta {
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch (rounded down). */
  mtime: number;
  /** Nanoseconds past `mtime` (absent: 0). */
  mtimeNsec?: number;
  xattrs?: Xattr[];
}

export interface ExtractOptions {
  /** Absolute path of the directory to extract into; it must exist. */
  root: string;
  /** true: the root holds a live tree (merge); false: the root is a fresh empty directory. */
  merge: boolean;
  /** Set numeric owners from the archive (needs root). */
  chown: boolean;
  /**
   * Sets xattrs and exact times, and in a fresh root creates the small files (several at a
   * time); without it times are set to within a microsecond and xattrs are not restored.
   */
  helper?: HelperPool;
  /** Restore extended attributes (ACLs, capabilities). */
  xattrs: boolean;
  /** Top-level names that are never written (with everything below them). */
  skipTopLevel?: (name: string) => boolean;
  /**
   * Only entries it accepts (by root-relative path) are written; the root's own attributes are
   * then left alone too. Everything is still path-checked.
   */
  select?: (rel: string) => boolean;
  /** Called once per skipped top-level entry. */
  onSkip?: (entryPath: string) => void;
  /** An attribute that could not be restored (the file itself was). */
  onWarning?: (entryPath: string, problem: string) => void;
  /** Prefix of merge-mode temporary names (must be a reserved name, e.g. restore's control prefix). */
  tempPrefix?: string;
  /** Options of the path-safety rules every entry is checked against. */
  safety?: SafetyOptions;
}

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;
const IMPLICIT_DIR_MODE = 0o755;
/** Files up to this size are created by the helpers in one request each (content included), in parallel. */
const SMALL_FILE = 256 * 1024;
/**
 * Bytes of large-file writes in flight on the thread pool (a fresh root only). Measured on the
 * medium bench set, zstd restore to disk: 5.1–6.1 s → 4.9–5.4 s, peak RSS unchanged (121–134 MiB).
 */
const WRITE_BEHIND = 4 * 1024 * 1024;
const isRoot = process.getuid?.() === 0;

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException)?.code;
}

export function metaOf(entry: TarEntry): EntryMeta {
  const meta: EntryMeta = { mode: entry.mode & 0o7777, uid: entry.uid, gid: entry.gid, mtime: entry.mtime };
  if (entry.mtimeNsec) meta.mtimeNsec = entry.mtimeNsec;
  if (entry.xattrs) meta.xattrs = entry.xattrs;
  return meta;
}

export class Extractor implements TarVisitor {
  readonly rules: SafetyRules;
  /** Large files' pieces are written on the thread pool while the reader goes on. */
  readonly keepsChunks = true;
  /** Regular files written, bytes written, all entries created. */
  files = 0;
  bytes = 0;
  entries = 0;
  rootMeta: EntryMeta | undefined;

  private readonly root: string;
  private readonly paths: TreePaths;
  private readonly dirs = new DeferredDirectories();
  /** Directories (relative) recently seen to exist as real directories; cleared when large. */
  private readonly ready = new Set<string>(['']);
  private readonly skipped = new Set<string>();
  private current: FileSink | undefined;
  private savedUmask: number | undefined;
  private tempCounter = 0;
  private readonly tempPrefix: string;
  private closed = false;
  /** Helper requests not answered yet, and the first failure among them. */
  private readonly inFlight = new Set<Promise<void>>();
  private failure: Error | undefined;
  private readonly warnings: AttributeWarnings;
  private warnedTimes = false;
  /** Paths with a helper request in flight (how many), and operations that wait for all of them. */
  private readonly pending = new Map<string, number>();
  private deferred: { rel: string; run: () => void }[] = [];
  private readonly deferredPaths = new Set<string>();
  /** Paths of large files whose writes are still in flight on the thread pool. */
  private readonly pathsBeingWritten = new Set<string>();
  /** Large files' writes on the thread pool (a fresh root only: merge mode writes each file here, synchronously). */
  private readonly behind: WriteBehind | undefined;
  /** Temporaries of written files that wait to take their path's place (removed if the extraction stops first). */
  private readonly unplaced = new Set<string>();

  constructor(private readonly options: ExtractOptions) {
    this.behind = options.merge ? undefined : new WriteBehind(WRITE_BEHIND);
    this.root = path.resolve(options.root);
    this.rules = new SafetyRules(options.safety);
    this.paths = new TreePaths(this.root);
    this.tempPrefix = options.tempPrefix ?? `.pvc-backup-extract-${process.pid}`;
    this.warnings = new AttributeWarnings(options.onWarning);
    this.savedUmask = process.umask(0);
  }

  entry(entry: TarEntry): EntrySink | undefined {
    if (this.failure) throw this.failure;
    const safe = this.rules.check(entry);
    const meta = metaOf(entry);
    if (this.options.select && !this.options.select(safe.rel)) return undefined;
    if (entry.xattrProblems) for (const problem of entry.xattrProblems) this.warnings.add(entry.path, problem);
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
    try {
      this.ensureParent(safe.rel);
      this.entries++;
      switch (safe.kind) {
        case 'dir':
          this.makeDirectory(safe.rel, meta);
          return undefined;
        case 'file':
          return this.openFile(safe, entry, meta);
        case 'symlink':
          if (this.mustWait(safe.rel)) this.defer(safe.rel, entry.path, () => this.makeSymlink(safe.rel, entry.linkpath, meta));
          else this.makeSymlink(safe.rel, entry.linkpath, meta);
          return undefined;
        case 'hardlink':
          this.linkEntry(safe.rel, safe.linkRel!, entry.path);
          return undefined;
      }
    } catch (error) {
      throw this.wrap(error, entry.path);
    }
  }

  /** Whether something about rel is still in flight or waiting, so what comes next must wait too. */
  private mustWait(rel: string): boolean {
    return this.pending.has(rel) || this.isDeferred(rel);
  }

  /** Runs `op` (in order with other deferred ones) once every helper request sent so far is done. */
  private defer(rel: string, shown: string, op: () => void): void {
    this.deferredPaths.add(rel);
    this.deferred.push({
      rel,
      run: () => {
        try {
          op();
        } catch (error) {
          throw this.wrap(error, shown);
        }
      },
    });
  }

  private track(rel: string, request: Promise<unknown>): void {
    this.pending.set(rel, (this.pending.get(rel) ?? 0) + 1);
    const done: Promise<void> = request.then(() => {
      const left = (this.pending.get(rel) ?? 1) - 1;
      if (left === 0) this.pending.delete(rel);
      else this.pending.set(rel, left);
      this.inFlight.delete(done);
    });
    this.inFlight.add(done);
  }

  private linkEntry(rel: string, targetRel: string, shown: string): void {
    const helper = this.options.helper;
    if (this.isDeferred(rel) || this.isDeferred(targetRel)) {
      this.defer(rel, shown, () => this.makeHardLink(rel, targetRel));
      return;
    }
    if (!this.pending.has(targetRel)) {
      if (this.pending.has(rel)) this.defer(rel, shown, () => this.makeHardLink(rel, targetRel));
      else this.makeHardLink(rel, targetRel);
      return;
    }
    // The target is being created by a helper: the link goes to the same one, after it.
    const owner = helper!.for(targetRel);
    if (this.pending.has(rel) && helper!.for(rel) !== owner) {
      this.defer(rel, shown, () => this.makeHardLink(rel, targetRel));
      return;
    }
    const request = owner.link(pathBytes(this.pathOf(targetRel)), pathBytes(this.pathOf(rel))).then(
      (failures) => {
        if (failures.length) this.failure ??= this.wrap(errnoError(failures[0]!.errno, 'link'), shown);
      },
      (error: unknown) => {
        this.failWith(error);
      },
    );
    this.track(rel, request);
  }

  /**
   * Bytes of small files gathered into buffers of their own, since the reader last asked. Counted
   * as garbage they make collections come sooner; held while the helpers write them, such copies
   * outlive young collections (measured: peak RSS of a zstd restore onto a slow disk 156 → 136 MB on
   * the medium set, 157 → 138 MB on the small one, as fast).
   */
  copied = 0;

  takeCopiedBytes(): number {
    const bytes = this.copied;
    this.copied = 0;
    return bytes;
  }

  /** Lets the archive reader wait while the helpers have much work queued, or until deferred operations could run. */
  backpressure(): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    if (this.deferred.length > 0) return this.runDeferred();
    const writes = this.behind?.backpressure();
    const helpers = this.options.helper?.backpressure();
    return writes && helpers ? Promise.all([writes, helpers]).then(() => undefined) : (writes ?? helpers);
  }

  /** A large file whose last writes are still in flight: it completes when they do, and later entries for its path wait. */
  whileWriting(sink: FileSink, done: Promise<void>): void {
    if (this.current === sink) this.current = undefined;
    this.pathsBeingWritten.add(sink.rel);
    const tracked: Promise<void> = done
      .catch((error: unknown) => this.failWith(error))
      .finally(() => {
        this.pathsBeingWritten.delete(sink.rel);
        this.inFlight.delete(tracked);
      });
    this.inFlight.add(tracked);
  }

  /** Records the first failure; the extraction stops at the reader's next step. */
  private failWith(error: unknown): void {
    this.failure ??= error instanceof Error ? error : new Error(String(error));
  }

  /** A write on the thread pool failed: the extraction stops at the reader's next step. */
  writeFailed(error: unknown, rel: string, size: number): void {
    this.failure ??= wrapFileError(this, error, rel, size);
  }

  /** Whether the extraction has failed or was closed: files still being written are then only closed. */
  get stopped(): boolean {
    return this.closed || this.failure !== undefined;
  }

  private async runDeferred(): Promise<void> {
    while (this.deferred.length > 0) {
      await this.drain();
      const ops = this.deferred;
      this.deferred = [];
      this.deferredPaths.clear();
      let done = new Set<string>();
      for (const op of ops) {
        // A second operation on a path waits for what the first left in flight (its attributes, set by path).
        if (done.has(op.rel)) {
          await this.drain();
          done = new Set();
        }
        done.add(op.rel);
        op.run();
      }
    }
  }

  /**
   * Checks the whole-archive safety rules, waits for every file's attributes and times, then
   * applies directory modes, attributes and mtimes, deepest first.
   */
  async finish(): Promise<void> {
    this.rules.finish();
    await this.runDeferred();
    await this.drain();
    for (const { rel, meta } of this.dirs.newestFirst()) {
      try {
        this.applyDirectory(rel, meta);
      } catch (error) {
        throw this.wrap(error, `./${rel}/`);
      }
    }
    await this.drain();
    this.warnings.flush();
    this.close();
  }

  /** Closes an open file and restores the umask; idempotent. Call on every failure path. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.abandon();
    this.current = undefined;
    for (const temp of this.unplaced) {
      try {
        fs.rmSync(this.pathOf(temp), { force: true });
      } catch {
        // Best effort on the way out: the failure that stopped the extraction is the one to report.
      }
    }
    this.unplaced.clear();
    this.paths.close();
    this.dirs.close();
    this.rules.close();
    if (this.savedUmask !== undefined) process.umask(this.savedUmask);
    this.savedUmask = undefined;
  }

  /** The temporary file of an interrupted merge write, if any (for signal cleanup). */
  get pendingTemp(): string | undefined {
    const temp = this.current?.temp;
    return temp === undefined ? undefined : path.join(this.root, temp);
  }

  /** Waits for every helper request in flight, whatever its outcome (before a failed extraction is removed). */
  async settle(): Promise<void> {
    this.deferred = [];
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
    if (this.failure) throw this.failure;
  }

  private wrap(error: unknown, entryPath: string): Error {
    if (error instanceof RunnerError) return error;
    const code = errno(error);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new OperationError(
        `the target volume is full: writing ${displayName(entryPath)} failed after ${humanBytes(this.bytes)} in ${count(this.files, 'file')}; free space or enlarge the volume`,
        'NO_SPACE',
        { cause: error },
      );
    }
    return new OperationError(`restoring ${displayName(entryPath)} failed: ${describeSystemError(error)}`, 'EXTRACT', { cause: error });
  }

  /** A path for system calls on the entry at rel. */
  pathOf(rel: string): string | Buffer {
    return this.paths.path(rel);
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
      if (!this.ready.has(ancestor)) this.directoryAt(ancestor, IMPLICIT_DIR_MODE);
      next = rel.indexOf('/', next + 1);
    }
  }

  private markReady(rel: string): void {
    if (this.ready.size > 4096) this.ready.clear();
    this.ready.add(rel);
  }

  /** Makes sure a real directory exists at rel (creating it with createMode), and marks it ready. */
  private directoryAt(rel: string, createMode: number): void {
    const at = this.pathOf(rel);
    if (this.options.merge) {
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(at);
      } catch (error) {
        if (errno(error) !== 'ENOENT') throw error;
      }
      if (st?.isDirectory()) {
        this.markReady(rel);
        return;
      }
      // A symlink or file where the archive has a directory: the archive wins, and nothing is
      // ever written through a link that was already in the target.
      if (st) fs.unlinkSync(at);
      fs.mkdirSync(at, createMode);
      this.markReady(rel);
      return;
    }
    try {
      fs.mkdirSync(at, createMode);
    } catch (error) {
      if (errno(error) !== 'EEXIST' || !fs.lstatSync(at).isDirectory()) throw error;
    }
    this.markReady(rel);
  }

  private makeDirectory(rel: string, meta: EntryMeta): void {
    // Writable and searchable by its owner until finish() applies the real mode.
    if (!this.ready.has(rel)) this.directoryAt(rel, meta.mode | 0o700);
    this.dirs.add(rel, meta);
  }

  private tempName(rel: string): string {
    const slash = rel.lastIndexOf('/');
    return `${slash === -1 ? '' : rel.slice(0, slash + 1)}${this.tempPrefix}.tmp${++this.tempCounter}`;
  }

  private openFile(safe: SafeEntry, entry: TarEntry, meta: EntryMeta): EntrySink {
    // Small files go to the helpers, complete (in order with what is in flight for their path).
    if (this.options.helper && !this.options.merge && !entry.sparse && entry.storedSize <= SMALL_FILE) {
      return new HelperFileSink(this, safe.rel, entry, meta);
    }
    // A large file for a path with work still in flight is written under a temporary name, and
    // takes the path's place after that work (placeFile).
    const later = this.options.merge || this.mustWait(safe.rel);
    return this.openMainFile(safe.rel, entry, meta, { temp: later, behind: !later });
  }

  /** A file whose path waits for deferred operations: written in order with them, by this thread. */
  deferFile(rel: string, data: Buffer, entry: TarEntry, meta: EntryMeta): void {
    this.defer(rel, entry.path, () => {
      const sink = this.openMainFile(rel, entry, meta, { temp: this.options.merge, behind: false });
      sink.data(data);
      sink.end();
    });
  }

  isDeferred(rel: string): boolean {
    return this.deferredPaths.has(rel) || this.pathsBeingWritten.has(rel);
  }

  private openMainFile(rel: string, entry: TarEntry, meta: EntryMeta, how: { temp: boolean; behind: boolean }): FileSink {
    const safe = { rel };
    const temp = how.temp ? this.tempName(rel) : undefined;
    const where = this.pathOf(temp ?? safe.rel);
    // As another user, user.* xattrs can be set only while the owner may write the file.
    const wantsXattrs = this.options.xattrs && meta.xattrs !== undefined;
    const createMode = (meta.mode & 0o777) | (wantsXattrs && !isRoot ? 0o200 : 0);
    let fd: number;
    try {
      fd = fs.openSync(where, CREATE_FLAGS, createMode);
    } catch (error) {
      // A second entry for the same path (appended archives): the later one wins.
      if (errno(error) !== 'EEXIST' || temp) throw error;
      fs.unlinkSync(where);
      fd = fs.openSync(where, CREATE_FLAGS, createMode);
    }
    const sink = new FileSink(this, fd, safe.rel, where, temp, meta, entry, createMode, how.behind ? this.behind : undefined);
    this.current = sink;
    return sink;
  }

  /** A small file, complete in memory: one helper request creates it with content and metadata. */
  writeSmallFile(rel: string, data: Buffer, meta: EntryMeta): void {
    const helper = this.options.helper!;
    const xattrs = this.options.xattrs ? meta.xattrs : undefined;
    const permissions = meta.mode & 0o777;
    // As another user, user.* xattrs can be set only while the owner may write the file.
    const createMode = permissions | (xattrs && !isRoot ? 0o200 : 0);
    const finalMode = meta.mode & 0o7777;
    const where = this.pathOf(rel);
    const request = helper
      .for(rel)
      .writeFile(pathBytes(where), data, {
        createMode,
        finalMode: finalMode !== createMode || this.options.chown ? finalMode : undefined,
        owner: this.options.chown ? { uid: meta.uid, gid: meta.gid } : undefined,
        xattrs,
        mtime: { sec: meta.mtime, nsec: meta.mtimeNsec ?? 0 },
      })
      .then(
        (failures) => {
          const fatal = failures.find((f) => f.step !== 'xattr');
          if (fatal) {
            this.failure ??= wrapFileError(this, errnoError(fatal.errno, fatal.step), rel, data.length);
            return;
          }
          this.reportFailures(rel, where, 'file', meta, xattrs, failures);
        },
        (error: unknown) => {
          this.failWith(error);
        },
      );
    this.track(rel, request);
    this.files++;
    this.bytes += data.length;
  }

  /**
   * Puts a written file in place, then has its attributes and times applied (`fd`, when still
   * open, for the calls that can use it). A temporary whose path still has work in flight (an
   * earlier entry's attributes, set by path) takes its place after that work, in order.
   */
  placeFile(sink: FileSink, meta: EntryMeta, mode: number | undefined, fd: number): void {
    if (this.current === sink) this.current = undefined;
    this.files++;
    const { rel, temp } = sink;
    if (temp && this.mustWait(rel)) {
      this.unplaced.add(temp);
      this.defer(rel, sink.shown, () => {
        this.unplaced.delete(temp);
        this.putInPlace(rel, temp, meta, mode, undefined);
      });
      return;
    }
    this.putInPlace(rel, temp, meta, mode, fd);
  }

  private putInPlace(rel: string, temp: string | undefined, meta: EntryMeta, mode: number | undefined, fd: number | undefined): void {
    if (temp) this.replaceWith(temp, rel);
    this.finishEntry(rel, this.pathOf(rel), meta, 'file', { mode, fd });
  }

  get chown(): boolean {
    return this.options.chown;
  }

  /**
   * After Node's own calls on a new entry: xattrs, the final mode (when it differs from the
   * create mode) and times that Node cannot set exactly go to the helper; times Node can set
   * exactly are set here.
   */
  finishEntry(rel: string, where: string | Buffer, meta: EntryMeta, kind: 'file' | 'symlink' | 'dir', options: { mode?: number; fd?: number } = {}): void {
    const time: Time = { sec: meta.mtime, nsec: meta.mtimeNsec ?? 0 };
    const xattrs = this.options.xattrs ? meta.xattrs : undefined;
    const helper = this.options.helper;
    const nodeTime = exactForNode(time);
    const drops = this.inheritedAclDrops(kind, xattrs);
    if (!helper) {
      if (options.mode !== undefined) chmod(where, options.mode, options.fd);
      if (xattrs) {
        const acl = xattrs.find((x) => x.name === ACL_ACCESS);
        const narrowed = acl && kind !== 'symlink' ? this.narrowGroup(where, meta, acl.value) : '';
        this.warnings.add(kind === 'dir' ? `./${rel}/` : `./${rel}`, `its extended attributes (${xattrs.map((x) => x.name).join(', ')}) were not restored: the system-call helper (perl) is not available${narrowed}`);
      }
      if (nodeTime === undefined && !this.warnedTimes) {
        this.warnedTimes = true;
        this.warnings.add(`./${rel}`, 'mtimes are restored to within a microsecond, not to the nanosecond: the system-call helper (perl) is not available');
      }
      setTimes(where, time, kind, options.fd);
      return;
    }
    if (!xattrs && !drops && options.mode === undefined && nodeTime !== undefined) {
      setTimes(where, time, kind, options.fd);
      return;
    }
    // With an inherited access ACL gone, the group bits still show its mask: the mode is set again.
    const mode = drops ? (options.mode ?? meta.mode & 0o7777) : options.mode;
    const request = helper.for(rel).apply(pathBytes(where), { ...drops, xattrs, mode, mtime: time }).then(
      (failures) => this.reportFailures(rel, where, kind, meta, xattrs, failures),
      (error: unknown) => {
        this.failWith(error);
      },
    );
    // By path: whatever names rel next waits for it. Directories come last, when nothing follows.
    if (kind !== 'dir') {
      this.track(rel, request);
      return;
    }
    this.inFlight.add(request);
    void request.finally(() => this.inFlight.delete(request));
  }

  /**
   * In a live tree (merge), a new entry inherits the default ACL of a directory that was already
   * there, which may grant access the archive does not (a 0640 file readable by another user). So
   * every file and directory loses the ACLs the archive does not give it, as with GNU tar `--acls`.
   * A fresh root never has a default ACL while entries are created: restore removes the staging
   * directory's inherited one first, and directories get theirs from the archive only at the end.
   */
  private inheritedAclDrops(kind: 'file' | 'symlink' | 'dir', xattrs: readonly Xattr[] | undefined): ReturnType<typeof aclsToDrop> {
    if (!this.options.merge || !this.options.xattrs || kind === 'symlink') return undefined;
    return aclsToDrop(xattrs, kind === 'dir');
  }

  private reportFailures(rel: string, where: string | Buffer, kind: 'file' | 'symlink' | 'dir', meta: EntryMeta, xattrs: readonly Xattr[] | undefined, failures: ApplyFailure[]): void {
    const shown = kind === 'dir' ? `./${rel}/` : `./${rel}`;
    for (const f of failures) {
      if (f.step === 'dropAcl') {
        this.warnings.add(shown, `its inherited ${f.index === 0 ? 'access' : 'default'} ACL, which the archive does not have, could not be removed (${errnoName(f.errno)})`);
        continue;
      }
      if (f.step === 'xattr') {
        const xattr = xattrs?.[f.index];
        const name = xattr?.name ?? '?';
        let narrowed = '';
        if (name === ACL_ACCESS && xattr && kind !== 'symlink') narrowed = this.narrowGroup(where, meta, xattr.value);
        this.warnings.add(shown, `its extended attribute ${name} was not restored: ${describeXattrErrno(name, f.errno)}${narrowed}`);
        continue;
      }
      this.failure ??= new OperationError(`restoring ./${displayName(rel)} failed: setting its ${f.step === 'mode' ? 'mode' : 'mtime'} failed (${errnoName(f.errno)})`, 'EXTRACT');
    }
  }

  /**
   * A lost access ACL must not widen access: the group bits show the ACL's mask, which may grant
   * more than the owning group had. They are narrowed to what the ACL gave the owning group.
   */
  private narrowGroup(where: string | Buffer, meta: EntryMeta, acl: Buffer): string {
    const limit = aclGroupLimit(acl);
    if (limit === undefined) return '';
    const mode = meta.mode & 0o7777;
    const narrowed = (mode & ~0o070) | (((mode >> 3) & 7 & limit) << 3);
    if (narrowed === mode) return '';
    try {
      fs.chmodSync(where, narrowed);
    } catch (error) {
      this.failure ??= new OperationError(`restoring ${displayName(String(where))} failed: narrowing its mode after its ACL was lost failed (${describeSystemError(error)})`, 'EXTRACT');
      return '';
    }
    return `; its mode was narrowed to ${narrowed.toString(8).padStart(4, '0')} so that the group gets no more than the ACL gave it`;
  }

  private applyDirectory(rel: string, meta: EntryMeta): void {
    const at = this.pathOf(rel);
    if (this.options.chown) fs.lchownSync(at, meta.uid, meta.gid);
    const mode = meta.mode & 0o7777;
    // As another user, user.* xattrs can be set only while the owner may write the directory.
    if (!isRoot && this.options.xattrs && meta.xattrs && !(mode & 0o200)) {
      fs.chmodSync(at, mode | 0o200);
      this.finishEntry(rel, at, meta, 'dir', { mode });
      return;
    }
    fs.chmodSync(at, mode);
    this.finishEntry(rel, at, meta, 'dir');
  }

  /** Puts a finished temporary entry in place of whatever is at rel (merge mode). */
  replaceWith(temp: string, rel: string): void {
    const from = this.pathOf(temp);
    const to = this.pathOf(rel);
    try {
      fs.renameSync(from, to);
    } catch (error) {
      const code = errno(error);
      if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
      removeTree(to);
      this.paths.forget(rel);
      fs.renameSync(from, to);
    }
  }

  private makeSymlink(rel: string, target: string, meta: EntryMeta): void {
    if (this.options.merge) {
      const temp = this.tempName(rel);
      const at = this.pathOf(temp);
      fs.symlinkSync(fsPath(target), at);
      try {
        if (this.options.chown) fs.lchownSync(at, meta.uid, meta.gid);
        this.replaceWith(temp, rel);
      } catch (error) {
        fs.rmSync(at, { force: true });
        throw error;
      }
      this.finishEntry(rel, this.pathOf(rel), meta, 'symlink');
      return;
    }
    const at = this.pathOf(rel);
    try {
      fs.symlinkSync(fsPath(target), at);
    } catch (error) {
      if (errno(error) !== 'EEXIST') throw error;
      fs.unlinkSync(at);
      fs.symlinkSync(fsPath(target), at);
    }
    if (this.options.chown) fs.lchownSync(at, meta.uid, meta.gid);
    this.finishEntry(rel, at, meta, 'symlink');
  }

  private makeHardLink(rel: string, targetRel: string): void {
    const at = this.pathOf(rel);
    const target = this.pathOf(targetRel);
    try {
      fs.linkSync(target, at);
    } catch (error) {
      if (errno(error) !== 'EEXIST') throw error;
      if (fs.lstatSync(at).isDirectory()) {
        removeTree(at);
        this.paths.forget(rel);
      } else fs.unlinkSync(at);
      fs.linkSync(target, at);
    }
  }
}

/** Collects a small file's data; at its end the helpers create the file in one request. */
class HelperFileSink implements EntrySink {
  private readonly content: Buffer;
  private filled = 0;

  constructor(
    private readonly owner: Extractor,
    readonly rel: string,
    private readonly entry: TarEntry,
    private readonly meta: EntryMeta,
  ) {
    this.content = Buffer.allocUnsafe(entry.storedSize);
    owner.copied += entry.storedSize;
  }

  data(chunk: Buffer): void {
    chunk.copy(this.content, this.filled);
    this.filled += chunk.length;
  }

  end(): void {
    const content = this.filled === this.content.length ? this.content : this.content.subarray(0, this.filled);
    if (this.owner.isDeferred(this.rel)) this.owner.deferFile(this.rel, content, this.entry, this.meta);
    else this.owner.writeSmallFile(this.rel, content, this.meta);
  }
}

class FileSink implements EntrySink {
  private fd: number | undefined;
  private readonly cursor: SparseCursor | undefined;
  private offset = 0;
  /** Writes in flight on the thread pool, and what runs once the last of them is done. */
  private inFlightWrites = 0;
  private afterWrites: (() => void) | undefined;

  constructor(
    private readonly owner: Extractor,
    fd: number,
    readonly rel: string,
    private readonly where: string | Buffer,
    /** Merge mode: the temporary entry's relative path. */
    readonly temp: string | undefined,
    private readonly meta: EntryMeta,
    private readonly entry: TarEntry,
    private readonly createMode: number,
    private readonly behind: WriteBehind | undefined,
  ) {
    this.fd = fd;
    if (entry.sparse) this.cursor = new SparseCursor(entry.sparse, entry.size);
  }

  /** The entry's path as the archive names it (for messages). */
  get shown(): string {
    return this.entry.path;
  }

  data(chunk: Buffer): void {
    const fd = this.fd!;
    try {
      if (this.cursor) this.cursor.feed(chunk, (piece, position) => this.put(fd, piece, position), () => undefined);
      else {
        this.put(fd, chunk, this.offset);
        this.offset += chunk.length;
      }
    } catch (error) {
      throw wrapFileError(this.owner, error, this.rel, this.entry.size);
    }
  }

  private put(fd: number, piece: Buffer, position: number): void {
    if (!this.behind) {
      writeAll(fd, piece, position);
      this.owner.bytes += piece.length;
      return;
    }
    this.inFlightWrites++;
    this.behind.write(fd, piece, position).then(
      () => {
        this.owner.bytes += piece.length;
        this.written();
      },
      (error: unknown) => {
        this.owner.writeFailed(error, this.rel, this.entry.size);
        this.written();
      },
    );
  }

  private written(): void {
    if (--this.inFlightWrites > 0) return;
    const next = this.afterWrites;
    this.afterWrites = undefined;
    next?.();
  }

  end(): void {
    if (this.inFlightWrites === 0) {
      this.complete();
      return;
    }
    const done = new Promise<void>((resolve) => {
      this.afterWrites = resolve;
    }).then(() => {
      if (this.owner.stopped) {
        this.abandon();
        return;
      }
      try {
        this.complete();
      } catch (error) {
        this.abandon();
        throw error;
      }
    });
    this.owner.whileWriting(this, done);
  }

  /** Its data written: size, owner, mode, attributes and times, then the descriptor closed. */
  private complete(): void {
    const fd = this.fd!;
    const { meta } = this;
    try {
      // A sparse file ends in its size: the holes were never written.
      if (this.cursor) {
        this.cursor.finish(() => undefined);
        fs.ftruncateSync(fd, this.entry.size);
      }
      if (this.owner.chown) fs.fchownSync(fd, meta.uid, meta.gid);
      // open() applied the permission bits; setuid/setgid/sticky need chmod (after chown, which clears them).
      const finalMode = meta.mode & 0o7777;
      let modeLater: number | undefined;
      if (finalMode !== this.createMode || (meta.mode & 0o7000) !== 0) {
        // With xattrs to set first (as another user, on a file that is not writable), the mode comes after them.
        if (meta.xattrs && this.createMode !== (meta.mode & 0o777)) modeLater = finalMode;
        else fs.fchmodSync(fd, finalMode);
      }
      this.owner.placeFile(this, meta, modeLater, fd);
      this.fd = undefined;
      fs.closeSync(fd);
    } catch (error) {
      throw wrapFileError(this.owner, error, this.rel, this.entry.size);
    }
  }

  /** Closes the descriptor of an unfinished file (and removes its temporary), once no write is in flight. */
  abandon(): void {
    if (this.inFlightWrites > 0) {
      this.afterWrites = () => this.abandon();
      return;
    }
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = undefined;
    }
    if (this.temp) fs.rmSync(this.where, { force: true });
  }
}

function wrapFileError(owner: Extractor, error: unknown, rel: string, size: number): Error {
  if (error instanceof RunnerError) return error;
  const code = errno(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new OperationError(
      `the target volume is full: writing ./${displayName(rel)} (${humanBytes(size)}) failed after ${humanBytes(owner.bytes)} in ${count(owner.files, 'file')}; free space or enlarge the volume`,
      'NO_SPACE',
      { cause: error },
    );
  }
  return new OperationError(`restoring ./${displayName(rel)} failed: ${describeSystemError(error)}`, 'EXTRACT', { cause: error });
}

/** An errno from a helper as a Node-style error, so the usual messages (no space, permission denied) apply. */
function errnoError(errno: number, step: string): NodeJS.ErrnoException {
  const code = Object.entries(os.constants.errno).find(([, n]) => n === errno)?.[0] ?? `E${errno}`;
  const error = new Error(`${code} (${step})`) as NodeJS.ErrnoException;
  error.code = code;
  error.errno = -errno;
  return error;
}

function pathBytes(where: string | Buffer): Buffer {
  return typeof where === 'string' ? encodeName(where) : where;
}

function chmod(where: string | Buffer, mode: number, fd: number | undefined): void {
  if (fd !== undefined) fs.fchmodSync(fd, mode);
  else fs.chmodSync(where, mode);
}

/**
 * The time as Node.js can pass it (a decimal string, which also carries negative times), when
 * libuv's double-based conversion gives back exactly these seconds and nanoseconds; undefined
 * when it cannot (most nanosecond times today are 238 ns apart as doubles).
 */
export function exactForNode(time: Time): string | undefined {
  const text = formatPaxTime(time);
  const d = Number(text);
  let sec = Math.trunc(d);
  let nsec = Math.trunc((d - sec) * 1e9);
  if (nsec < 0) {
    sec--;
    nsec += 1e9;
  }
  return sec === time.sec && nsec === time.nsec ? text : undefined;
}

/** Sets atime = mtime with Node's calls (exact when exactForNode says so, else to within a microsecond). */
function setTimes(where: string | Buffer, time: Time, kind: 'file' | 'symlink' | 'dir', fd: number | undefined): void {
  const text = formatPaxTime(time);
  if (fd !== undefined) fs.futimesSync(fd, text as unknown as number, text as unknown as number);
  else if (kind === 'symlink') fs.lutimesSync(where, text as unknown as number, text as unknown as number);
  else fs.utimesSync(where, text as unknown as number, text as unknown as number);
}

function describeXattrErrno(name: string, errno: number): string {
  if (errno === ERRNO.EOPNOTSUPP) return 'the target file system does not support it';
  if (errno === ERRNO.EPERM || errno === ERRNO.EACCES) {
    if (name === CAPABILITY) return 'not permitted (file capabilities need root with CAP_SETFCAP)';
    if (name.startsWith('trusted.') || name.startsWith('security.')) return `not permitted (${name.split('.')[0]}.* attributes need root with CAP_SYS_ADMIN)`;
    return 'not permitted (run the restore as root)';
  }
  if (errno === ERRNO.ENOSPC || errno === ERRNO.E2BIG) return 'the target file system has no room for it';
  return errnoName(errno);
}

/** Warnings about attributes: each of the first 100 names its file, then one line says how many more. */
class AttributeWarnings {
  private count = 0;

  constructor(private readonly onWarning: ((entryPath: string, problem: string) => void) | undefined) {}

  add(entryPath: string, problem: string): void {
    this.count++;
    if (this.count <= 100) this.onWarning?.(displayName(entryPath), problem);
  }

  flush(): void {
    if (this.count > 100) this.onWarning?.('.', `${this.count - 100} more entries had attributes that were not restored (the first 100 are named above)`);
    this.count = 0;
  }
}

/** Applies owner (optionally), mode and mtime to a directory (or the target root), with Node's calls. */
export function applyMeta(abs: string, meta: EntryMeta, chown: boolean): void {
  if (chown) fs.lchownSync(abs, meta.uid, meta.gid);
  fs.chmodSync(abs, meta.mode & 0o7777);
  applyTimes(abs, meta);
}

/** Sets a directory's mtime (and atime) to the entry's, to the nanosecond and before 1970 too. */
export function applyTimes(abs: string, meta: EntryMeta): void {
  setTimes(abs, { sec: meta.mtime, nsec: meta.mtimeNsec ?? 0 }, 'dir', undefined);
}

/**
 * Removes a file or a whole tree, of any depth; as non-root, directories without write or search
 * permission for their owner are made accessible first (a restored tree may hold 0555 directories).
 */
export function removeTree(abs: string | Buffer): void {
  try {
    fs.rmSync(abs, { recursive: true, force: true });
    return;
  } catch (error) {
    const code = errno(error);
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENAMETOOLONG') throw error;
  }
  removeDeep(typeof abs === 'string' ? encodeName(abs) : abs);
}

/** Depth-first removal through directory descriptors, making directories accessible on the way. */
function removeDeep(target: Buffer): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(target);
  } catch (error) {
    if (errno(error) === 'ENOENT') return;
    throw error;
  }
  if (!st.isDirectory()) {
    fs.unlinkSync(target);
    return;
  }
  if ((st.mode & 0o700) !== 0o700) fs.chmodSync(target, (st.mode & 0o7777) | 0o700);
  const base = DirectoryBase.open(target);
  try {
    for (const name of sortedNames(base.self)) removeDeep(base.child(name));
  } finally {
    base.close();
  }
  fs.rmdirSync(target);
}
