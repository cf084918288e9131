import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { OpenedManifest } from '../archive/manifest.js';
import { DirectoryBase, TreePaths } from '../archive/long-paths.js';
import { compareWalkOrder, decodeName } from '../archive/names.js';
import { type EntryKind, type SafetyOptions, SafetyRules, normalizeEntryPath } from '../archive/safety.js';
import { SparseCursor } from '../archive/sparse.js';
import type { EntrySink, TarEntry, TarVisitor } from '../archive/tar-reader.js';
import { NameListing } from '../archive/listing.js';
import { ExternalSort, type RecordCodec } from '../archive/sorted-runs.js';
import { RunnerError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import type { RestoreMode } from '../config.js';

/**
 * The dry run's diff: what a restore would add, replace (content or type differs) and remove
 * in the target. The archive's per-file index (the manifest, or one pass over an archive
 * without manifest) is merged, in walk order, with a walk of the target that never follows
 * symlinks; neither side is held in memory (an index that is not in walk order is sorted on
 * disk first). Files of the same size are compared by SHA-256; a different size is "replaced"
 * without reading the file. A hard link compares like the file it links to.
 */

export interface IndexEntry {
  /** Root-relative path ('' for the root). */
  rel: string;
  kind: EntryKind;
  size: number;
  sha256?: string;
  /** Symlink target, or the normalized path a hard link points to. */
  link?: string;
}

export interface PlanItem {
  /** `./rel` as in the archive. */
  path: string;
  kind: EntryKind | 'other';
  bytes: number;
}

export type PlanAction = 'add' | 'replace' | 'remove';

export interface RestorePlan {
  add: number;
  replace: number;
  remove: number;
  unchanged: number;
  addBytes: number;
  replaceBytes: number;
  removeBytes: number;
}

/** The archive index in walk order; may be read more than once. */
export interface IndexSource {
  entries(): Iterable<IndexEntry>;
  close(): void;
}

function fromManifestFile(f: { path: string; type: EntryKind; size: number; sha256?: string; linkTarget?: string }): IndexEntry {
  const entry: IndexEntry = { rel: normalizeEntryPath(f.path), kind: f.type, size: f.size };
  if (f.sha256) entry.sha256 = f.sha256;
  if (f.type === 'symlink') entry.link = f.linkTarget ?? '';
  if (f.type === 'hardlink') entry.link = normalizeEntryPath(f.linkTarget ?? '');
  return entry;
}

/** The per-file index of a pvc-backup manifest, streamed (sorted on disk first if it is not in walk order). */
export function indexFromManifest(opened: OpenedManifest): IndexSource {
  const read = function* (): Generator<IndexEntry> {
    const reader = opened.files();
    // Each entry read leaves its parsed line behind (memory.ts: a collection every few thousand).
    const governor = new GarbageGovernor();
    try {
      for (let f = reader.next(); f; f = reader.next()) {
        governor.processed(0, 1);
        yield fromManifestFile(f);
      }
    } finally {
      reader.close();
    }
  };
  let previous: string | undefined;
  for (const entry of read()) {
    if (previous !== undefined && compareWalkOrder(previous, entry.rel) >= 0) {
      const sorter = new ExternalSorter();
      for (const e of read()) sorter.add(e);
      return sorter.finish();
    }
    previous = entry.rel;
  }
  return { entries: read, close: () => undefined };
}

/** Builds the index while reading an archive that has no manifest (hashing file contents); applies the safety rules too. */
export class IndexBuilder implements TarVisitor {
  readonly rules: SafetyRules;
  private readonly sorter = new ExternalSorter();

  constructor(options: SafetyOptions = {}) {
    this.rules = new SafetyRules(options);
  }

  finish(): void {
    this.rules.finish();
  }

  entry(entry: TarEntry): EntrySink | undefined {
    const safe = this.rules.check(entry);
    const item: IndexEntry = { rel: safe.rel, kind: safe.kind, size: safe.kind === 'file' ? entry.size : 0 };
    if (safe.kind === 'symlink') item.link = entry.linkpath;
    if (safe.kind === 'hardlink') item.link = safe.linkRel;
    if (safe.kind !== 'file') {
      this.sorter.add(item);
      return undefined;
    }
    const hash = createHash('sha256');
    const cursor = entry.sparse ? new SparseCursor(entry.sparse, entry.size) : undefined;
    const zeros = (_at: number, length: number) => {
      for (let left = length; left > 0; left -= ZEROS.length) hash.update(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
    };
    return {
      data: (chunk) => (cursor ? cursor.feed(chunk, (piece) => hash.update(piece), zeros) : hash.update(chunk)),
      end: () => {
        cursor?.finish(zeros);
        item.sha256 = hash.digest('hex');
        this.sorter.add(item);
      },
    };
  }

  index(): IndexSource {
    return this.sorter.finish();
  }
}

const ZEROS = Buffer.alloc(1024 * 1024);

/**
 * Sorts index entries into walk order with bounded memory: runs of 32,768 entries sorted in
 * memory, written to an unlinked temporary file, merged back. A path listed twice keeps its
 * last entry (a later entry of an archive replaces an earlier one).
 */
class ExternalSorter {
  private readonly sort = new ExternalSort(SEQUENCED_CODEC, walkOrderThenSeq, 32_768);
  private seq = 0;

  add(entry: IndexEntry): void {
    this.sort.add({ seq: this.seq++, entry });
  }

  finish(): IndexSource {
    const sorted = this.sort.finish();
    return { entries: () => lastOfEach(sorted.records()), close: () => sorted.close() };
  }
}

interface Sequenced {
  seq: number;
  entry: IndexEntry;
}

const walkOrderThenSeq = (a: Sequenced, b: Sequenced) => compareWalkOrder(a.entry.rel, b.entry.rel) || a.seq - b.seq;

/** JSON keeps lossless names exact: a lone surrogate is written as its \u escape. */
const SEQUENCED_CODEC: RecordCodec<Sequenced> = {
  encode: ({ seq, entry }) => Buffer.from(JSON.stringify([seq, entry]), 'utf8'),
  decode: (bytes) => {
    const [seq, entry] = JSON.parse(bytes.toString('utf8')) as [number, IndexEntry];
    return { seq, entry };
  },
};

function* lastOfEach(sorted: Iterable<Sequenced>): Generator<IndexEntry> {
  let held: IndexEntry | undefined;
  for (const { entry } of sorted) {
    if (held && held.rel !== entry.rel) yield held;
    held = entry;
  }
  if (held) yield held;
}

/** Read buffer of hashFile, reused (a fresh 1 MiB per file took a dry run of a million files to 280 MiB). */
const HASH_BUFFER = Buffer.allocUnsafe(1024 * 1024);

function hashFile(abs: Buffer): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const hash = createHash('sha256');
    for (;;) {
      const n = fs.readSync(fd, HASH_BUFFER, 0, HASH_BUFFER.length, null);
      if (n === 0) break;
      hash.update(HASH_BUFFER.subarray(0, n));
    }
    return hash.digest('hex');
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function lstat(abs: Buffer): fs.Stats | undefined {
  try {
    return fs.lstatSync(abs);
  } catch {
    return undefined;
  }
}

function kindOf(st: fs.Stats): EntryKind | 'other' {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

function show(rel: string, dir: boolean): string {
  return rel === '' ? './' : `./${rel}${dir ? '/' : ''}`;
}

function readLinkText(abs: Buffer): string | undefined {
  try {
    const target = fs.readlinkSync(abs);
    if (!target.includes('\ufffd')) return target;
    return decodeName(fs.readlinkSync(abs, { encoding: 'buffer' }));
  } catch {
    return undefined;
  }
}

export interface PlanOptions {
  /** Top-level names of the target that a restore never touches (control entries, lost+found in replace mode). */
  ignoreTopLevel: (name: string) => boolean;
  /** Every path that would change, as it is found. */
  onItem: (action: PlanAction, item: PlanItem) => void;
}

/** Peeks one entry ahead in the index. */
class Cursor<T> {
  private readonly iterator: Iterator<T>;
  current: T | undefined;

  constructor(items: Iterable<T>) {
    this.iterator = items[Symbol.iterator]();
    this.advance();
  }

  advance(): void {
    const next = this.iterator.next();
    this.current = next.done ? undefined : next.value;
  }

  /** Ends the iteration early (a generator's `finally` runs). */
  close(): void {
    this.iterator.return?.();
  }
}

/** Whether rel lies inside the directory dir ('' is the root). */
function inside(rel: string, dir: string): boolean {
  return dir === '' ? rel !== '' : rel.length > dir.length && rel.startsWith(dir) && rel.charCodeAt(dir.length) === 0x2f;
}

/** Compares the archive index with the target directory. Reads the target only. */
export function planRestore(target: string, index: IndexSource, mode: RestoreMode, options: PlanOptions): RestorePlan {
  const plan: RestorePlan = { add: 0, replace: 0, remove: 0, unchanged: 0, addBytes: 0, replaceBytes: 0, removeBytes: 0 };
  // Each entry leaves names, stats and a log line behind (memory.ts: a collection every few thousand).
  const governor = new GarbageGovernor();
  // Hard links compare like the file they link to: the files they name, with size and hash.
  const linked = new Map<string, IndexEntry | undefined>();
  for (const e of index.entries()) if (e.kind === 'hardlink' && e.link !== undefined) linked.set(e.link, undefined);
  if (linked.size > 0) for (const e of index.entries()) if (e.kind === 'file' && linked.has(e.rel)) linked.set(e.rel, e);

  const emit = (action: PlanAction, rel: string, kind: EntryKind | 'other', bytes: number, dir: boolean) => {
    governor.processed(0, 1);
    plan[action]++;
    plan[`${action}Bytes`] += bytes;
    options.onItem(action, { path: show(rel, dir), kind, bytes });
  };
  const sizeOf = (e: IndexEntry) => (e.kind === 'hardlink' ? (linked.get(e.link ?? '')?.size ?? e.size) : e.size);
  const add = (e: IndexEntry) => emit('add', e.rel, e.kind, sizeOf(e), e.kind === 'dir');
  const replace = (e: IndexEntry) => emit('replace', e.rel, e.kind, sizeOf(e), e.kind === 'dir');

  /** Everything in the target below (and including) a path that goes away. */
  const removeTree = (base: DirectoryBase, name: string, rel: string) => {
    const at = base.child(name);
    const st = lstat(at);
    if (!st) return;
    emit('remove', rel, kindOf(st), st.isFile() ? st.size : 0, st.isDirectory());
    if (!st.isDirectory()) return;
    const child = base.descend(name);
    try {
      for (const n of safeNames(child)) removeTree(child, n, `${rel}/${n}`);
    } finally {
      child.close();
    }
  };

  const cursor = new Cursor(index.entries());
  /** Consumes every index entry inside dir as an addition (the target has nothing there). */
  const addAllInside = (dir: string) => {
    while (cursor.current && inside(cursor.current.rel, dir)) {
      add(cursor.current);
      cursor.advance();
    }
  };

  const same = (e: IndexEntry, at: Buffer, st: fs.Stats): boolean => {
    switch (e.kind) {
      case 'dir':
        return st.isDirectory();
      case 'symlink':
        return st.isSymbolicLink() && readLinkText(at) === e.link;
      case 'file':
      case 'hardlink': {
        const file = e.kind === 'hardlink' ? (linked.get(e.link ?? '') ?? e) : e;
        return st.isFile() && st.size === file.size && (file.sha256 === undefined || hashFile(at) === file.sha256);
      }
    }
  };

  /** One directory of the target (a real directory) against the index entries inside it. */
  const walk = (base: DirectoryBase, dir: string) => {
    const names = new Cursor(safeNames(base));
    try {
      for (;;) {
        governor.processed(0, 1);
        const entry = cursor.current && inside(cursor.current.rel, dir) ? cursor.current : undefined;
        const name = names.current;
        if (!entry && name === undefined) return;
        const entryChild = entry ? entry.rel.slice(dir === '' ? 0 : dir.length + 1).split('/', 1)[0]! : undefined;
        const childRel = (n: string) => (dir === '' ? n : `${dir}/${n}`);
        if (name !== undefined && (entryChild === undefined || name < entryChild)) {
          // Only in the target.
          names.advance();
          if (dir === '' && options.ignoreTopLevel(name)) continue;
          if (mode === 'replace') removeTree(base, name, childRel(name));
          continue;
        }
        const rel = childRel(entryChild!);
        if (name === undefined || entryChild! < name) {
          // Only in the archive.
          if (dir === '' && options.ignoreTopLevel(entryChild!)) {
            skipInside(rel);
            continue;
          }
          if (cursor.current?.rel === rel) {
            add(cursor.current);
            cursor.advance();
          }
          addAllInside(rel);
          continue;
        }
        // In both.
        names.advance();
        if (dir === '' && options.ignoreTopLevel(name)) {
          skipInside(rel);
          continue;
        }
        const at = base.child(name);
        const st = lstat(at);
        const own = cursor.current?.rel === rel ? cursor.current : undefined;
        if (own) cursor.advance();
        if (!st) {
          if (own) add(own);
          addAllInside(rel);
          continue;
        }
        if (own && own.kind !== 'dir') {
          if (same(own, at, st)) plan.unchanged++;
          else replace(own);
          // A target directory that becomes a file: its contents go.
          if (st.isDirectory()) {
            const child = base.descend(name);
            try {
              for (const n of safeNames(child)) removeTree(child, n, `${rel}/${n}`);
            } finally {
              child.close();
            }
          }
          continue;
        }
        if (st.isDirectory()) {
          if (own) plan.unchanged++;
          const child = base.descend(name);
          try {
            walk(child, rel);
          } finally {
            child.close();
          }
          continue;
        }
        // A file or symlink where the archive has a directory (listed, or implied by its contents).
        if (own) replace(own);
        else removeTree(base, name, rel);
        addAllInside(rel);
      }
    } finally {
      names.close();
    }
  };
  const skipInside = (dir: string) => {
    while (cursor.current && (cursor.current.rel === dir || inside(cursor.current.rel, dir))) cursor.advance();
  };

  try {
    if (cursor.current?.rel === '') cursor.advance();
    const root = DirectoryBase.ofPath(target);
    walk(root, '');
  } finally {
    index.close();
  }
  return plan;
}

/** A directory's names, sorted; none when it cannot be listed. */
function* safeNames(base: DirectoryBase): Generator<string, void> {
  let listing: NameListing;
  try {
    listing = NameListing.read(base.self);
  } catch (error) {
    if (error instanceof RunnerError) throw error;
    return;
  }
  try {
    yield* listing;
  } finally {
    listing.close();
  }
}

/**
 * Mount points strictly inside the target (a separate file system, or a bind mount of a file or
 * directory). A replace would move them aside and a merge could delete their contents, and
 * neither can rename them (EBUSY), so restore refuses them up front. Read from the kernel's
 * mount table of this process (/proc/self/mountinfo); without it, every directory of the target
 * is compared by device number.
 */
export function mountsInside(target: string): string[] {
  const root = fs.realpathSync(target);
  let table: string | undefined;
  try {
    table = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    table = undefined;
  }
  if (table === undefined) return mountsByDevice(root);
  const inside: string[] = [];
  for (const line of table.split('\n')) {
    // Fields: id, parent id, major:minor, root, mount point, … (octal escapes for space, tab, newline, backslash).
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mountPoint = field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
    if (mountPoint.startsWith(root === '/' ? '/' : `${root}/`) && mountPoint !== root) inside.push(mountPoint);
  }
  return [...new Set(inside)].sort();
}

function mountsByDevice(root: string): string[] {
  const inside: string[] = [];
  walkOwnFileSystem(root, () => undefined, (dir) => inside.push(dir));
  return inside.sort();
}

/**
 * Visits every entry below `root` that is not a directory (its path, by bytes, and its name),
 * walking only directories on root's own file system and never through a symlink (readdir
 * types, lstat for devices), at any depth; a directory on another file system is reported to
 * `onOtherDevice` and not entered. Unreadable directories are skipped.
 */
export function walkOwnFileSystem(root: string, visit: (path: Buffer, name: string) => void, onOtherDevice?: (dir: string) => void): void {
  const device = fs.lstatSync(root).dev;
  const tree = new TreePaths(root);
  const dirs = [''];
  try {
    while (dirs.length > 0) {
      const rel = dirs.pop()!;
      let base: DirectoryBase;
      let entries: fs.Dirent<Buffer>[];
      try {
        base = tree.directory(rel);
        entries = fs.readdirSync(base.self, { withFileTypes: true, encoding: 'buffer' });
      } catch {
        continue;
      }
      for (const entry of entries) {
        const name = decodeName(entry.name);
        const path = base.child(entry.name);
        if (!entry.isDirectory()) {
          visit(path, name);
          continue;
        }
        const childRel = rel === '' ? name : `${rel}/${name}`;
        if (lstat(path)?.dev === device) dirs.push(childRel);
        else onOtherDevice?.(`${root}/${childRel}`);
      }
    }
  } finally {
    tree.close();
  }
}
