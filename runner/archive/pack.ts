import fs from 'node:fs';
import { OperationError, describeSystemError } from '../errors.js';
import type { BufferPool } from './buffer-pool.js';
import { xattrRecord } from './check.js';
import { ContentHash } from './hash.js';
import { type HardLinkPlan, type LinkDecision, inodeKey } from './hard-links.js';
import { MAX_WARNINGS, type ManifestFile, type ManifestWarning } from './manifest.js';
import { decodeName, displayName, encodeName } from './names.js';
import { type PaxValue, type Time, formatPaxTime, paxLength } from './pax.js';
import { symlinkEscapes } from './safety.js';
import { type Extent, dataBytes, encodeSparseMap, scanForHoles } from './sparse.js';
import { ERRNO, type HelperPool, type Xattr, errnoName } from './syscall-helper.js';
import { BLOCK, MAX_OCTAL_ID, MAX_OCTAL_SIZE, writeUstar } from './ustar.js';
import { type ExcludeMatcher, TreeWalker, type WalkEntry, entryKind, specialFileName, splitNanoseconds } from './walk.js';
import { xattrPaxRecords } from './xattrs.js';

/**
 * Turns a directory tree into a tar stream (POSIX ustar + pax headers, the layout of GNU tar's
 * `--format=posix`), reading every file exactly once: the bytes land directly in the output
 * batch and are hashed there for the manifest. Names and link targets are stored as their exact
 * bytes, mtimes to the nanosecond, extended attributes (ACLs, capabilities) and sparse files as
 * GNU tar stores them (xattrs.ts, sparse.ts). Output comes in chunks of the pool's buffer size;
 * every archived entry is handed to `onFile` as it is done, so nothing per entry stays in memory.
 */

/** Entries read ahead of the one being packed, so their xattrs arrive before they are needed. */
const LOOKAHEAD = 128;

export interface PackOptions {
  source: string;
  exclude: ExcludeMatcher;
  /**
   * Regular files of the source archived with the bytes of another file (source-relative path →
   * that file), under their own name, mode, owner and mtime: the consistent copies of live
   * SQLite databases (runner/consistency/backup-inputs.ts).
   */
  substitutes?: ReadonlyMap<string, string>;
  /** Trees archived after the source, each under `archivePath` (the pre-backup dumps). */
  extraTrees?: readonly { dir: string; archivePath: string; exclude: ExcludeMatcher }[];
  /**
   * The source's hard links as its scan found them (hard-links.ts). Without a plan, or for what
   * changed since the scan, links are found through a map of the inodes met so far.
   */
  hardLinks?: HardLinkPlan;
  /** Skip what cannot be archived (with a warning) instead of failing. */
  skipUnreadable: boolean;
  /** Where output chunks come from; its buffer size is the chunk size. */
  pool: BufferPool;
  /** Reads xattrs and sparse maps; without it no xattrs are archived and holes are found by reading. */
  helper?: HelperPool;
  /** Archive extended attributes (ACLs, capabilities); needs `helper`. */
  xattrs: boolean;
  /** Every archived entry, in archive order. */
  onFile: (file: ManifestFile) => void;
  /** Every file that changed, vanished or was skipped, as it happens. */
  onWarning?: (warning: PackWarning) => void;
}

export type PackWarning = ManifestWarning;

interface HeaderFields {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink' | 'Link';
  /** Bytes of data that follow the header. */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: Time;
  linkpath?: string;
  xattrs?: readonly Xattr[];
  sparse?: { realSize: number };
}

type XattrResult = { xattrs: Xattr[] } | { errno: number };

export class TarPacker {
  /** Warnings for the manifest (at most MAX_WARNINGS) and how many more there were. */
  readonly warnings: PackWarning[] = [];
  warningsOmitted = 0;
  /** Entries archived, regular files among them. */
  entries = 0;
  files = 0;
  /** Sum of regular file sizes, and of the file data actually stored (sparse files without holes). */
  totalBytes = 0;
  storedBytes = 0;
  /** File content bytes read so far (for progress). */
  bytesRead = 0;
  /** Uncompressed tar bytes produced so far. */
  tarBytes = 0;

  private readonly pool: BufferPool;
  private readonly batch: number;
  private out: Buffer;
  private pos = 0;
  private readonly ready: Buffer[] = [];
  /** Outside the plan: first path of every inode with more links than seen so far, and how many are still to come. */
  private readonly hardLinks = new Map<string, { path: string; left: number }>();
  /** The plan of the tree being packed (the source's; the dumps have none). */
  private linkPlan: HardLinkPlan | undefined;
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

  async *chunks(): AsyncGenerator<Buffer> {
    const trees = [{ dir: this.options.source, archivePath: '', exclude: this.options.exclude }, ...(this.options.extraTrees ?? [])];
    for (const tree of trees) {
      this.linkPlan = tree.archivePath === '' ? this.options.hardLinks : undefined;
      yield* this.packTree(tree.dir, tree.archivePath, tree.exclude);
    }
    this.linkPlan = undefined;
    this.zeros(2 * BLOCK);
    this.flush();
    yield* this.takeReady();
  }

  /** One tree, its entries named `archivePath/rel` (just `rel` for the source). */
  private async *packTree(dir: string, archivePath: string, exclude: ExcludeMatcher): AsyncGenerator<Buffer> {
    const walker = new TreeWalker(dir, exclude, LOOKAHEAD + 8);
    const walk = archivePath === '' ? walker.entries() : renamed(walker.entries(), archivePath);
    const queue: { entry: WalkEntry; xattrs: Promise<XattrResult> | undefined }[] = [];
    const refill = () => {
      while (queue.length < LOOKAHEAD) {
        const next = walk.next();
        if (next.done) return;
        queue.push({ entry: next.value, xattrs: this.requestXattrs(next.value) });
      }
    };
    try {
      refill();
      while (queue.length > 0) {
        if (this.aborted) throw this.aborted;
        const { entry, xattrs } = queue.shift()!;
        refill();
        const attrs = xattrs ? this.xattrsOf(entry, await xattrs) : undefined;
        yield* this.packEntry(entry, attrs);
        yield* this.takeReady();
      }
    } finally {
      walk.return(undefined);
      walker.close();
    }
  }

  private requestXattrs(entry: WalkEntry): Promise<XattrResult> | undefined {
    const { helper, xattrs } = this.options;
    if (!helper || !xattrs || !entry.stat || entryKind(entry.stat) === undefined) return undefined;
    const request = helper.for(entry.rel).xattrs(entry.path);
    request.catch(() => undefined);
    return request;
  }

  private xattrsOf(entry: WalkEntry, result: XattrResult): Xattr[] | undefined {
    if ('xattrs' in result) return result.xattrs.length ? result.xattrs : undefined;
    // Vanished or replaced entries are reported when they are packed; a file system without xattrs has none.
    if (result.errno === ERRNO.ENOENT || result.errno === ERRNO.ENOTDIR || result.errno === ERRNO.ELOOP || result.errno === ERRNO.EOPNOTSUPP) return undefined;
    this.warn({ path: `./${entry.rel}`, problem: `its extended attributes could not be read (${errnoName(result.errno)}); archived without them` });
    return undefined;
  }

  private *takeReady(): Generator<Buffer> {
    while (this.ready.length > 0) yield this.ready.shift()!;
  }

  private warn(warning: PackWarning): void {
    const shown = { path: displayName(warning.path), problem: warning.problem };
    this.options.onWarning?.(shown);
    if (this.warnings.length < MAX_WARNINGS) this.warnings.push(shown);
    else this.warningsOmitted++;
  }

  private problem(rel: string, problem: string, hint: string): void {
    if (!this.options.skipUnreadable) {
      throw new OperationError(`cannot archive ./${displayName(rel)}: ${problem}; ${hint}`, 'SOURCE_UNREADABLE');
    }
    this.warn({ path: `./${rel}`, problem: `skipped: ${problem}` });
  }

  private record(file: ManifestFile): void {
    this.entries++;
    if (file.type === 'file') {
      this.files++;
      this.totalBytes += file.size;
      this.storedBytes += file.dataBytes ?? file.size;
    }
    this.options.onFile(file);
  }

  private async *packEntry(entry: WalkEntry, xattrs: Xattr[] | undefined): AsyncGenerator<Buffer> {
    const { rel } = entry;
    if (entry.error) {
      if (entry.error.code === 'ENOENT') {
        this.warn({ path: `./${rel}`, problem: 'vanished while the backup ran' });
        return;
      }
      if (entry.error.code === 'ENOTDIR') {
        // Listed as a directory, replaced by something else before it could be read.
        this.warn({ path: `./${rel}`, problem: 'was replaced by a non-directory while the backup ran; its contents are not in the archive' });
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
    const base = { mode: Number(stat.mode) & 0o7777, uid: Number(stat.uid), gid: Number(stat.gid), mtime: splitNanoseconds(stat.mtimeNs) };
    if (kind === 'dir') {
      const path = rel === '' ? './' : `./${rel}/`;
      const offset = this.header({ path, type: 'Directory', size: 0, ...base, xattrs });
      this.record({ path, type: 'dir', size: 0, ...manifestMeta(base), ...xattrField(xattrs), offset });
      return;
    }
    const path = `./${rel}`;
    if (kind === 'symlink') {
      let target: string;
      try {
        target = readLink(entry.path);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'EINVAL') {
          this.warn({ path, problem: code === 'ENOENT' ? 'vanished while the backup ran' : 'was replaced by a non-symlink while the backup ran; skipped' });
          return;
        }
        this.problem(rel, describeSystemError(error), UNREADABLE_HINT);
        return;
      }
      if (target.startsWith('/')) {
        this.warn({ path, problem: `is a symlink to the absolute path ${displayName(target)}; pvc-backup restore refuses links that point outside the target unless --allow-absolute-symlinks (chart: restore.allowAbsoluteSymlinks) asks to recreate them as they are, so make it relative or restore with that flag` });
      } else if (symlinkEscapes(rel, target)) {
        this.warn({ path, problem: `is a symlink to ${displayName(target)}, which points outside the backed-up directory; pvc-backup restore refuses an archive with such a link whatever the flags (it never creates a link out of the target), so make the link point inside the volume or leave it out with --exclude` });
      }
      const offset = this.header({ path, type: 'SymbolicLink', size: 0, linkpath: target, ...base, xattrs });
      this.record({ path, type: 'symlink', size: 0, ...manifestMeta(base), linkTarget: target, ...xattrField(xattrs), offset });
      return;
    }
    // A substituted file is archived on its own (its bytes are not the inode's), never as a hard link.
    const inode = stat.nlink > 1n && !this.options.substitutes?.has(rel) ? inodeKey(stat) : undefined;
    const decision: LinkDecision = inode && this.linkPlan ? this.linkPlan.decide(rel, inode) : { kind: 'unplanned' };
    if (decision.kind === 'link') {
      this.link(path, `./${decision.target}`, base);
      return;
    }
    if (decision.kind === 'first') {
      if (!(yield* this.packFile(entry, path, xattrs))) this.linkPlan!.firstMissing(inode!);
      return;
    }
    const first = inode ? this.hardLinks.get(inode) : undefined;
    if (first !== undefined) {
      if (--first.left <= 0) this.hardLinks.delete(inode!);
      this.link(path, first.path, base);
      return;
    }
    if ((yield* this.packFile(entry, path, xattrs)) && inode) this.hardLinks.set(inode, { path, left: Number(stat.nlink) - 1 });
  }

  private link(path: string, target: string, base: { mode: number; uid: number; gid: number; mtime: Time }): void {
    const offset = this.header({ path, type: 'Link', size: 0, linkpath: target, ...base });
    this.record({ path, type: 'hardlink', size: 0, ...manifestMeta(base), linkTarget: target, offset });
  }

  /**
   * Archives one regular file's data. True when the data archived is the inode the walk saw, so
   * that its other names may link to it; false when it was not archived (vanished, replaced,
   * skipped) or another file had taken its name by the time it was opened.
   */
  private async *packFile(entry: WalkEntry, path: string, xattrs: Xattr[] | undefined): AsyncGenerator<Buffer, boolean> {
    let fd: number;
    const substitute = this.options.substitutes?.get(entry.rel);
    try {
      // O_NONBLOCK: a regular file replaced by a FIFO after it was listed must not block the run
      // forever in open(); the type is checked on the opened descriptor below.
      fd = fs.openSync(substitute ?? entry.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.warn({ path, problem: 'vanished while the backup ran' });
        return false;
      }
      if (code === 'ELOOP' || code === 'ENXIO' || code === 'ENOTDIR') {
        // Listed as a regular file, replaced (by a symlink, a socket, …) before it was opened.
        this.warn({ path, problem: 'was replaced by something other than a regular file while the backup ran; skipped' });
        return false;
      }
      this.problem(entry.rel, describeSystemError(error), UNREADABLE_HINT);
      return false;
    }
    try {
      const before = fs.fstatSync(fd, { bigint: true });
      if (!before.isFile()) {
        const kind = before.isDirectory() ? 'directory' : specialFileName(before);
        this.warn({ path, problem: `was replaced by a ${kind} while the backup ran; skipped` });
        return false;
      }
      const size = Number(before.size);
      // A substitute's bytes under the live file's own mode, owner and mtime.
      const owner = substitute === undefined ? before : entry.stat!;
      const meta = { mode: Number(owner.mode) & 0o7777, uid: Number(owner.uid), gid: Number(owner.gid), mtime: splitNanoseconds(owner.mtimeNs) };
      // Like GNU tar: a file with fewer allocated blocks than its size may have holes.
      const extents = Number(before.blocks) * 512 < size ? await this.holes(entry.rel, fd, size) : undefined;
      const hash = new ContentHash();
      let offset: number;
      let shrank: boolean;
      if (extents) {
        const stored = dataBytes(extents);
        const map = encodeSparseMap({ extents, realSize: size });
        offset = this.header({ path, type: 'File', size: map.length + stored, ...meta, xattrs, sparse: { realSize: size } });
        this.put(map);
        shrank = yield* this.copySparse(fd, path, extents, size, hash);
        this.padToBlock(map.length + stored);
      } else {
        offset = this.header({ path, type: 'File', size, ...meta, xattrs });
        shrank = yield* this.copy(fd, entry.rel, path, 0, size, hash);
        this.padToBlock(size);
      }
      const after = fs.fstatSync(fd, { bigint: true });
      if (!shrank && (after.size !== before.size || after.mtimeNs !== before.mtimeNs)) {
        this.warn({ path, problem: `changed while being read (size ${size} -> ${after.size}); the archive holds the bytes that were read` });
      }
      const sparseField = extents ? { dataBytes: dataBytes(extents) } : {};
      this.record({ path, type: 'file', size, ...manifestMeta(meta), sha256: hash.digest(), ...xattrField(xattrs), ...sparseField, offset });
      return before.ino === entry.stat!.ino && before.dev === entry.stat!.dev;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The data extents of a file that may be sparse; undefined when it has no holes after all. */
  private async holes(rel: string, fd: number, size: number): Promise<Extent[] | undefined> {
    let extents: Extent[] | undefined;
    const helper = this.options.helper;
    if (helper) {
      const map = await helper.for(rel).dataMap(fd);
      // SEEK_DATA says where the data is; a file system without it reports all data, which is then the truth.
      if ('extents' in map) extents = map.extents;
    }
    extents ??= await scanForHoles(fd, size);
    const stored = dataBytes(extents);
    return stored < size ? extents : undefined;
  }

  /** Copies `length` bytes from `position` into the stream and the hash; zero-fills (and says so) when the file shrank. Returns true if it shrank. */
  private *copy(fd: number, rel: string, path: string, position: number, length: number, hash: ContentHash, sparse = false): Generator<Buffer, boolean> {
    let remaining = length;
    let at = position;
    while (remaining > 0) {
      const want = Math.min(this.batch - this.pos, remaining);
      let n: number;
      try {
        n = fs.readSync(fd, this.out, this.pos, want, sparse ? at : null);
      } catch (error) {
        // The header is out already: keep the archive consistent and say the content is incomplete.
        throw new OperationError(`reading ./${displayName(rel)} failed: ${describeSystemError(error)}`, 'SOURCE_READ');
      }
      if (n === 0) {
        this.warn({ path, problem: `shrank while being read (at byte ${at}); the rest is zero-filled` });
        yield* this.fillZeros(remaining, hash);
        return true;
      }
      hash.update(this.out.subarray(this.pos, this.pos + n));
      this.pos += n;
      at += n;
      remaining -= n;
      this.bytesRead += n;
      if (this.pos === this.batch) {
        this.flush();
        yield* this.takeReady();
      }
    }
    return false;
  }

  /** Zeros into the stream and the hash, a batch at a time. */
  private *fillZeros(count: number, hash: ContentHash): Generator<Buffer> {
    let remaining = count;
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
  }

  private async *copySparse(fd: number, path: string, extents: readonly Extent[], size: number, hash: ContentHash): AsyncGenerator<Buffer, boolean> {
    let position = 0;
    let shrank = false;
    for (const extent of extents) {
      await hash.zeros(extent.offset - position);
      if (shrank) {
        // Keep the stream consistent with the header: zeros for the rest.
        yield* this.fillZeros(extent.length, hash);
      } else {
        shrank = yield* this.copy(fd, path.slice(2), path, extent.offset, extent.length, hash, true);
      }
      position = extent.offset + extent.length;
    }
    await hash.zeros(size - position);
    return shrank;
  }

  /** Writes an entry's headers (pax when needed, then ustar); returns the tar offset where they start. */
  private header(fields: HeaderFields): number {
    const offset = this.tarBytes + this.pos;
    const records: [string, PaxValue][] = [];
    let ustarPath = fields.path;
    if (fields.sparse) {
      records.push(['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.name', encodeName(fields.path)], ['GNU.sparse.realsize', String(fields.sparse.realSize)]);
      ustarPath = sparseStandIn(fields.path);
    } else if (!fitsUstar(fields.path)) {
      records.push(['path', encodeName(fields.path)]);
      ustarPath = standIn(fields.path);
    }
    const linkpath = fields.linkpath ?? '';
    let ustarLink = linkpath;
    if (!fitsUstar(linkpath)) {
      records.push(['linkpath', encodeName(linkpath)]);
      ustarLink = standIn(linkpath);
    }
    if (fields.size > MAX_OCTAL_SIZE) records.push(['size', String(fields.size)]);
    if (fields.uid > MAX_OCTAL_ID) records.push(['uid', String(fields.uid)]);
    if (fields.gid > MAX_OCTAL_ID) records.push(['gid', String(fields.gid)]);
    const { sec, nsec } = fields.mtime;
    if (nsec !== 0 || sec < 0 || sec > MAX_OCTAL_SIZE) records.push(['mtime', formatPaxTime(fields.mtime)]);
    if (fields.xattrs) records.push(...xattrPaxRecords(fields.xattrs));
    if (records.length > 0) {
      const length = paxLength(records);
      this.block();
      writeUstar(this.out, this.pos, { name: standIn(paxName(fields.path)), type: 'ExtendedHeader', mode: 0o644, uid: 0, gid: 0, size: length, mtime: 0, linkname: '' });
      this.advance(BLOCK);
      this.putPax(records);
      this.padToBlock(length);
    }
    this.block();
    writeUstar(this.out, this.pos, {
      name: ustarPath,
      type: fields.type,
      mode: fields.mode,
      uid: fields.uid,
      gid: fields.gid,
      size: fields.size,
      mtime: sec,
      linkname: ustarLink,
    });
    this.advance(BLOCK);
    return offset;
  }

  /** Makes room for one header block at pos (blocks never straddle a batch: everything is 512-aligned). */
  private block(): void {
    if (this.pos + BLOCK > this.batch) this.flush();
  }

  private advance(n: number): void {
    this.pos += n;
    if (this.pos === this.batch) this.flush();
  }

  /** Pax records straight into the stream, without building the body on its own. */
  private putPax(records: readonly (readonly [string, PaxValue])[]): void {
    for (const [key, raw] of records) {
      const valueLength = typeof raw === 'string' ? Buffer.byteLength(raw, 'utf8') : raw.length;
      const rest = key.length + valueLength + 3;
      let length = rest + String(rest).length;
      if (String(length).length !== String(rest).length) length = rest + String(length).length;
      const head = `${length} ${key}=`;
      if (typeof raw === 'string' && this.pos + length <= this.batch) {
        this.pos += this.out.write(`${head}${raw}\n`, this.pos, 'utf8');
        if (this.pos === this.batch) this.flush();
        continue;
      }
      this.put(Buffer.from(head, 'latin1'));
      this.put(typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw);
      this.put(NEWLINE);
    }
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

const NEWLINE = Buffer.from('\n');

/** A walk's entries under another name: `archivePath` for its root, `archivePath/rel` below it. */
function* renamed(entries: Generator<WalkEntry>, archivePath: string): Generator<WalkEntry> {
  try {
    for (const entry of entries) yield { ...entry, rel: entry.rel === '' ? archivePath : `${archivePath}/${entry.rel}` };
  } finally {
    entries.return(undefined);
  }
}

function manifestMeta(meta: { mode: number; uid: number; gid: number; mtime: Time }): Pick<ManifestFile, 'mode' | 'mtime' | 'mtimeNsec' | 'uid' | 'gid'> {
  return meta.mtime.nsec === 0
    ? { mode: meta.mode, mtime: meta.mtime.sec, uid: meta.uid, gid: meta.gid }
    : { mode: meta.mode, mtime: meta.mtime.sec, mtimeNsec: meta.mtime.nsec, uid: meta.uid, gid: meta.gid };
}

function xattrField(xattrs: readonly Xattr[] | undefined): { xattrs?: Record<string, string> } {
  const record = xattrRecord(xattrs);
  return record ? { xattrs: record } : {};
}

function readLink(path: Buffer): string {
  const target = fs.readlinkSync(path);
  // Node replaces bytes that are not UTF-8 by U+FFFD; such a target is read again as bytes.
  if (!target.includes('\ufffd')) return target;
  return decodeName(fs.readlinkSync(path, { encoding: 'buffer' }));
}

function fitsUstar(name: string): boolean {
  return name.length < 100 && /^[\x20-\x7e]*$/.test(name);
}

function standIn(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, '_').slice(0, 99);
}

function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1) || '.';
}

function dirName(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  return slash <= 0 ? '.' : trimmed.slice(0, slash);
}

/** The ustar name of a pax header entry, as GNU tar names it: `<dir>/PaxHeaders/<name>`. */
function paxName(path: string): string {
  return `${dirName(path)}/PaxHeaders/${baseName(path)}`.slice(-99);
}

/** The ustar name of a sparse file's entry, as GNU tar names it, so a tar without sparse support does not write over the real name. */
function sparseStandIn(path: string): string {
  return standIn(`${dirName(path)}/GNUSparseFile.0/${baseName(path)}`);
}

const UNREADABLE_HINT = 'fix its permissions, run as root (the chart adds CAP_DAC_READ_SEARCH), exclude it with --exclude, or pass --skip-unreadable';
