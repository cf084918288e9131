import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Manifest } from '../archive/manifest.js';
import { type EntryKind, type SafetyOptions, SafetyRules, normalizeEntryPath } from '../archive/safety.js';
import type { EntrySink, TarEntry, TarVisitor } from '../archive/tar-reader.js';
import type { RestoreMode } from '../config.js';

/**
 * The dry run's diff: what a restore would add, replace (content or type differs) and remove
 * in the target, computed from the archive's per-file index (the manifest, or one pass over an
 * archive without manifest) and a walk of the target that never follows symlinks. Files of the
 * same size are compared by SHA-256; a different size is "replaced" without reading the file.
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

export interface RestorePlan {
  add: PlanItem[];
  replace: PlanItem[];
  remove: PlanItem[];
  unchanged: number;
  addBytes: number;
  replaceBytes: number;
  removeBytes: number;
}

/** The per-file index of a pvc-backup manifest, normalized like the extractor does. */
export function indexFromManifest(manifest: Manifest): IndexEntry[] {
  return manifest.files.map((f) => {
    const rel = normalizeEntryPath(f.path);
    const entry: IndexEntry = { rel, kind: f.type, size: f.size };
    if (f.sha256) entry.sha256 = f.sha256;
    if (f.type === 'symlink') entry.link = f.linkTarget ?? '';
    if (f.type === 'hardlink') entry.link = normalizeEntryPath(f.linkTarget ?? '');
    return entry;
  });
}

/** Builds the index while reading an archive that has no manifest (hashing file contents); applies the safety rules too. */
export class IndexBuilder implements TarVisitor {
  readonly rules: SafetyRules;
  readonly entries: IndexEntry[] = [];

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
    this.entries.push(item);
    if (safe.kind !== 'file') return undefined;
    const hash = createHash('sha256');
    return {
      data: (chunk) => hash.update(chunk),
      end: () => {
        item.sha256 = hash.digest('hex');
      },
    };
  }
}

function hashFile(abs: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
    return hash.digest('hex');
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function lstat(abs: string): fs.Stats | undefined {
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

const IMPLICIT_DIR: IndexEntry = { rel: '', kind: 'dir', size: 0 };

export interface PlanOptions {
  /** Top-level names of the target that a restore never touches (control entries, lost+found in replace mode). */
  ignoreTopLevel: (name: string) => boolean;
}

/** Compares the archive index with the target directory. Reads the target only. */
export function planRestore(target: string, index: readonly IndexEntry[], mode: RestoreMode, options: PlanOptions): RestorePlan {
  const byRel = new Map<string, IndexEntry>();
  for (const entry of index) {
    if (entry.rel === '') continue;
    const slash = entry.rel.indexOf('/');
    if (options.ignoreTopLevel(slash === -1 ? entry.rel : entry.rel.slice(0, slash))) continue;
    byRel.set(entry.rel, entry);
  }
  // Hard links compare like the file they link to.
  for (const entry of byRel.values()) {
    if (entry.kind !== 'hardlink' || entry.link === undefined) continue;
    const linked = byRel.get(entry.link);
    if (linked) {
      entry.size = linked.size;
      if (linked.sha256) entry.sha256 = linked.sha256;
    }
  }

  const plan: RestorePlan = { add: [], replace: [], remove: [], unchanged: 0, addBytes: 0, replaceBytes: 0, removeBytes: 0 };
  /** Archive paths below which the target has no real directory: everything there is new. */
  const fresh = new Set<string>();
  const realDir = new Map<string, boolean>([['', true]]);
  const isRealDir = (rel: string): boolean => {
    let known = realDir.get(rel);
    if (known === undefined) {
      known = lstat(`${target}/${rel}`)?.isDirectory() ?? false;
      realDir.set(rel, known);
    }
    return known;
  };

  const add = (e: IndexEntry) => {
    plan.add.push({ path: show(e.rel, e.kind === 'dir'), kind: e.kind, bytes: e.size });
    plan.addBytes += e.size;
  };
  const replace = (e: IndexEntry) => {
    plan.replace.push({ path: show(e.rel, e.kind === 'dir'), kind: e.kind, bytes: e.size });
    plan.replaceBytes += e.size;
  };

  for (const e of byRel.values()) {
    let underFresh = false;
    let ancestorsReal = true;
    for (let slash = e.rel.indexOf('/'); slash !== -1; slash = e.rel.indexOf('/', slash + 1)) {
      const ancestor = e.rel.slice(0, slash);
      if (fresh.has(ancestor)) {
        underFresh = true;
        break;
      }
      if (!isRealDir(ancestor)) ancestorsReal = false;
    }
    if (underFresh || !ancestorsReal) {
      add(e);
      if (e.kind === 'dir') fresh.add(e.rel);
      continue;
    }
    const abs = `${target}/${e.rel}`;
    const st = lstat(abs);
    if (!st) {
      add(e);
      if (e.kind === 'dir') fresh.add(e.rel);
      continue;
    }
    let same: boolean;
    switch (e.kind) {
      case 'dir':
        same = st.isDirectory();
        if (!same) fresh.add(e.rel);
        break;
      case 'symlink':
        same = st.isSymbolicLink() && fs.readlinkSync(abs) === e.link;
        break;
      case 'file':
      case 'hardlink':
        same = st.isFile() && st.size === e.size && (e.sha256 === undefined || hashFile(abs) === e.sha256);
        break;
    }
    if (same) plan.unchanged++;
    else replace(e);
  }

  // What disappears: in replace mode everything the archive does not hold; in both modes whatever
  // sits below a target directory that the archive replaces with a non-directory.
  const removeTree = (rel: string, st: fs.Stats) => {
    plan.remove.push({ path: show(rel, st.isDirectory()), kind: kindOf(st), bytes: st.isFile() ? st.size : 0 });
    if (st.isFile()) plan.removeBytes += st.size;
    if (!st.isDirectory()) return;
    for (const name of safeReaddir(`${target}/${rel}`)) {
      const child = `${rel}/${name}`;
      const cst = lstat(`${target}/${child}`);
      if (cst) removeTree(child, cst);
    }
  };
  const walk = (rel: string) => {
    for (const name of safeReaddir(rel === '' ? target : `${target}/${rel}`)) {
      if (rel === '' && options.ignoreTopLevel(name)) continue;
      const child = rel === '' ? name : `${rel}/${name}`;
      const st = lstat(`${target}/${child}`);
      if (!st) continue;
      const wanted = byRel.get(child) ?? (implicitDirs.has(child) ? IMPLICIT_DIR : undefined);
      if (!wanted) {
        if (mode === 'replace') removeTree(child, st);
        else if (st.isDirectory()) walk(child);
        continue;
      }
      if (!st.isDirectory()) {
        // A file where the archive only implies a directory (no entry of its own): it goes.
        if (wanted === IMPLICIT_DIR) removeTree(child, st);
        continue;
      }
      if (wanted.kind === 'dir') walk(child);
      else for (const name2 of safeReaddir(`${target}/${child}`)) {
        const grandchild = `${child}/${name2}`;
        const gst = lstat(`${target}/${grandchild}`);
        if (gst) removeTree(grandchild, gst);
      }
    }
  };
  const implicitDirs = new Set<string>();
  for (const rel of byRel.keys()) {
    for (let slash = rel.indexOf('/'); slash !== -1; slash = rel.indexOf('/', slash + 1)) implicitDirs.add(rel.slice(0, slash));
  }
  walk('');
  return plan;
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
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
 * Visits every entry below `root` that is not a directory, walking only directories on root's
 * own file system and never through a symlink (readdir types, lstat for devices); a directory
 * on another file system is reported to `onOtherDevice` and not entered. Unreadable directories
 * are skipped.
 */
export function walkOwnFileSystem(root: string, visit: (dir: string, entry: fs.Dirent) => void, onOtherDevice?: (dir: string) => void): void {
  const device = fs.lstatSync(root).dev;
  const dirs = [root];
  while (dirs.length > 0) {
    const dir = dirs.pop()!;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) {
        visit(dir, entry);
        continue;
      }
      const abs = `${dir}/${entry.name}`;
      if (lstat(abs)?.dev === device) dirs.push(abs);
      else onOtherDevice?.(abs);
    }
  }
}
