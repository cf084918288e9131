import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach } from 'vitest';

/**
 * Real directory trees for the functional tests: a rich tree to back up, and a snapshot of
 * any tree as a sorted list of entries, so two trees compare with one `toEqual`.
 */

export const isRoot = process.getuid?.() === 0;

/** The fixed time every file and directory of the rich tree carries. */
export const FIXED_TIME = new Date('2021-03-04T05:06:07Z');

/** Numeric owner given to some entries when the tests run as root. */
export const OTHER_UID = 4321;
export const OTHER_GID = 8765;

/**
 * Real temporary directories under os.tmpdir(), removed after each test (or after the file,
 * with `scope: 'file'`, for fixtures shared by several tests).
 */
export function useTempDirs(scope: 'test' | 'file' = 'test'): (label?: string) => Promise<string> {
  const dirs: string[] = [];
  // rm -rf walks with directory descriptors: it also removes trees deeper than PATH_MAX.
  const remove = (d: string) => rm(d, { recursive: true, force: true }).catch(() => execFileSync('rm', ['-rf', '--', d]));
  const cleanup = async () => {
    await Promise.all(dirs.splice(0).map(remove));
  };
  if (scope === 'test') afterEach(cleanup);
  else afterAll(cleanup);
  return async (label = 'dir') => {
    const dir = await mkdtemp(path.join(os.tmpdir(), `pvc-backup-${label}-`));
    dirs.push(dir);
    return dir;
  };
}

export interface RichTree {
  /** Paths (relative, '/'-separated) of entries the tree holds, for assertions by name. */
  longPath: string;
  veryLongPath: string;
  unicodeName: string;
  oddNames: string[];
  /** True when some entries were given OTHER_UID/OTHER_GID (only possible as root). */
  chowned: boolean;
}

function write(root: string, rel: string, content: string | Buffer, mode?: number): void {
  const file = path.join(root, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  if (mode !== undefined) fs.chmodSync(file, mode);
}

/**
 * Builds the tree the interoperability tests round-trip: regular files (empty, small, 3 MB
 * random), nested and empty directories, relative / directory / dangling symlinks, a hard-link
 * pair, a path over 100 bytes and one over 255 bytes, unicode names, names with a space, a tab
 * and a newline, modes 0755/0600/0444, a setgid directory, fixed mtimes, and (as root) entries
 * owned by another numeric uid/gid.
 */
export function buildRichTree(root: string, options: { bigFileBytes?: number } = {}): RichTree {
  write(root, 'empty.txt', '');
  write(root, 'hello.txt', 'hello, world\n');
  write(root, 'data/random.bin', randomBytes(options.bigFileBytes ?? 3 * 1024 * 1024));
  write(root, 'data/nested/deeper/leaf.txt', 'leaf\n');
  fs.mkdirSync(path.join(root, 'empty-dir'));
  fs.mkdirSync(path.join(root, 'data/nested/empty-inner'), { recursive: true });

  write(root, 'modes/exec.sh', '#!/bin/sh\necho hi\n', 0o755);
  write(root, 'modes/private.key', 'secret-ish\n', 0o600);
  write(root, 'modes/readonly.txt', 'read only\n', 0o444);
  fs.mkdirSync(path.join(root, 'modes/setgid-dir'));
  write(root, 'modes/setgid-dir/inside.txt', 'inside\n');

  fs.symlinkSync('hello.txt', path.join(root, 'link-to-file'));
  fs.symlinkSync('../data/nested', path.join(root, 'modes/link-to-dir'));
  fs.symlinkSync('does/not/exist', path.join(root, 'dangling-link'));

  write(root, 'links/hard-a.txt', 'shared by two names\n');
  fs.linkSync(path.join(root, 'links/hard-a.txt'), path.join(root, 'links/hard-b.txt'));

  const longPath = `long/${'n'.repeat(120)}.txt`;
  write(root, longPath, 'over 100 bytes\n');
  const veryLongPath = [1, 2, 3, 4].map((i) => `${String(i).repeat(70)}`).join('/') + `/${'f'.repeat(40)}.txt`;
  write(root, veryLongPath, 'over 255 bytes\n');

  const unicodeName = 'ünïcødé/日本語-файл-😀.txt';
  write(root, unicodeName, 'unicode\n');
  const oddNames = ['odd/with space.txt', 'odd/with\ttab.txt', 'odd/with\nnewline.txt'];
  for (const name of oddNames) write(root, name, `${JSON.stringify(name)}\n`);
  // A symlink whose target is long and non-ASCII, so linkpath needs pax as well.
  fs.symlinkSync(`../${veryLongPath}`, path.join(root, 'odd/long-link'));

  let chowned = false;
  if (isRoot) {
    fs.chownSync(path.join(root, 'hello.txt'), OTHER_UID, OTHER_GID);
    fs.chownSync(path.join(root, 'data/nested'), OTHER_UID, OTHER_GID);
    fs.lchownSync(path.join(root, 'link-to-file'), OTHER_UID, OTHER_GID);
    fs.chownSync(path.join(root, 'modes/readonly.txt'), 0, OTHER_GID);
    chowned = true;
  }
  // chmod after chown: chown clears setgid bits.
  fs.chmodSync(path.join(root, 'modes/setgid-dir'), 0o2755);
  fs.chmodSync(path.join(root, 'empty-dir'), 0o700);
  setTimes(root, FIXED_TIME);
  return { longPath, veryLongPath, unicodeName, oddNames, chowned };
}

/** Sets every file's and directory's mtime (and atime) below and including `root`. Symlinks keep theirs. */
export function setTimes(root: string, time: Date): void {
  // Children before parents: setting a child's time does not touch its directory's mtime, but
  // creating files does, so this runs after the tree is complete.
  const visit = (dir: string) => {
    for (const name of fs.readdirSync(dir)) {
      const abs = path.join(dir, name);
      const st = fs.lstatSync(abs);
      if (st.isSymbolicLink()) continue;
      if (st.isDirectory()) visit(abs);
      fs.utimesSync(abs, time, time);
    }
  };
  visit(root);
  fs.utimesSync(root, time, time);
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface SnapshotEntry {
  /** '.' for the root, otherwise relative and '/'-separated. */
  path: string;
  type: EntryType;
  /** Permission bits incl. setuid/setgid/sticky (symlinks: omitted, they have none of their own). */
  mode?: number;
  /** Regular files: size and sha256 of the content, mtime in whole seconds. */
  size?: number;
  sha256?: string;
  mtime?: number;
  /** Symlinks: the target as stored. */
  target?: string;
  /** Files with more than one name inside the tree: every name of that inode, sorted. */
  hardlinks?: string[];
  uid?: number;
  gid?: number;
}

export interface SnapshotOptions {
  /** Include uid/gid (compare ownership). */
  owner?: boolean;
  /** Include the root directory's own entry (mode, owner). Default true. */
  root?: boolean;
  /** Relative paths to leave out (and everything below them). */
  ignore?: (rel: string) => boolean;
}

/** SHA-256 of a file, read in 4 MiB steps (files of many GiB, sparse ones too). */
export function sha256File(file: string): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) hash.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** A new file of `size` bytes holding `pieces` at their offsets; the rest stays holes. */
export function writeSparseFile(file: string, size: number, pieces: [offset: number, data: Buffer][]): void {
  const fd = fs.openSync(file, 'w');
  try {
    for (const [offset, data] of pieces) fs.writeSync(fd, data, 0, data.length, offset);
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Everything the tests compare about a tree, as a list sorted by path: type, content (size +
 * sha256), mode, mtime for files, symlink targets, hard-link identity (which names share an
 * inode inside the tree), empty directories (every directory is an entry), and optionally owners.
 */
export function snapshotTree(root: string, options: SnapshotOptions = {}): SnapshotEntry[] {
  const entries: SnapshotEntry[] = [];
  const inodes = new Map<string, string[]>();
  const visit = (abs: string, rel: string) => {
    const st = fs.lstatSync(abs);
    const entry: SnapshotEntry = { path: rel, type: 'other' };
    if (st.isFile()) {
      entry.type = 'file';
      entry.mode = st.mode & 0o7777;
      entry.size = st.size;
      entry.sha256 = sha256File(abs);
      entry.mtime = Math.floor(st.mtimeMs / 1000);
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        const names = inodes.get(key) ?? [];
        names.push(rel);
        inodes.set(key, names);
        entry.hardlinks = names; // shared array: complete once the walk is done
      }
    } else if (st.isDirectory()) {
      entry.type = 'dir';
      entry.mode = st.mode & 0o7777;
    } else if (st.isSymbolicLink()) {
      entry.type = 'symlink';
      entry.target = fs.readlinkSync(abs);
    } else {
      entry.mode = st.mode & 0o7777;
    }
    if (options.owner) {
      entry.uid = st.uid;
      entry.gid = st.gid;
    }
    if (rel !== '.' || options.root !== false) entries.push(entry);
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(abs).sort()) {
        const childRel = rel === '.' ? name : `${rel}/${name}`;
        if (options.ignore?.(childRel)) continue;
        visit(path.join(abs, name), childRel);
      }
    }
  };
  visit(root, '.');
  for (const entry of entries) {
    if (entry.hardlinks) {
      if (entry.hardlinks.length < 2) delete entry.hardlinks;
      else entry.hardlinks = [...entry.hardlinks].sort();
    }
  }
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * The paths a pvc-backup archive of `root` holds, in archive order, as tar lists them
 * (`./`, `./dir/`, `./dir/file`): depth first, names sorted by code unit, each directory
 * before its contents. Written independently of the runner's walker.
 */
export function expectedArchivePaths(root: string, exclude: (rel: string) => boolean = () => false): string[] {
  const out: string[] = ['./'];
  const visit = (abs: string, rel: string) => {
    for (const name of fs.readdirSync(abs).sort()) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      if (exclude(childRel)) continue;
      const st = fs.lstatSync(path.join(abs, name));
      out.push(st.isDirectory() ? `./${childRel}/` : `./${childRel}`);
      if (st.isDirectory()) visit(path.join(abs, name), childRel);
    }
  };
  visit(root, '');
  return out;
}

/** A byte-exact picture of a directory (names, types, modes, content, mtimes), to prove nothing was written. */
export function exactState(dir: string, ignore?: (rel: string) => boolean): string {
  return JSON.stringify(
    snapshotTree(dir, { owner: true, ignore }).map((e) => {
      const st = fs.lstatSync(path.join(dir, e.path));
      return { ...e, mtimeNs: e.type === 'symlink' ? undefined : String(st.mtimeMs) };
    }),
  );
}

/** Writes files (creating directories); a key ending in '/' makes an empty directory. */
export function writeTree(root: string, files: Record<string, string | Buffer>): void {
  for (const [rel, content] of Object.entries(files)) {
    if (rel.endsWith('/')) fs.mkdirSync(path.join(root, rel), { recursive: true });
    else write(root, rel, content);
  }
}

export interface RawSnapshotEntry {
  /** The path's bytes, hex-encoded (names need not be UTF-8). */
  path: string;
  /** find's %y: f, d, l, … */
  type: string;
  mode: string;
  uid: string;
  gid: string;
  /** Regular files only. */
  size?: string;
  /** Seconds with the nanoseconds, as find prints them (%T@). */
  mtime: string;
  /** Symlinks: the target's bytes, hex-encoded. */
  target?: string;
  /** 512-byte blocks allocated (%b), with `blocks: true`. */
  blocks?: number;
}

/**
 * A tree as `find` sees it, byte for byte and at any depth (find walks with directory
 * descriptors): names and link targets as raw bytes, types, modes, owners, sizes and mtimes to
 * the nanosecond. Independent of the runner's own walk.
 */
export function rawSnapshot(root: string, options: { blocks?: boolean; ignore?: (rel: Buffer) => boolean } = {}): RawSnapshotEntry[] {
  const out = execFileSync('find', ['.', '-printf', '%p\\0%y\\0%m\\0%U\\0%G\\0%s\\0%T@\\0%b\\0%l\\0'], { cwd: root, maxBuffer: 1 << 30 });
  const fields: Buffer[] = [];
  for (let at = 0; at < out.length; ) {
    const nul = out.indexOf(0, at);
    fields.push(out.subarray(at, nul));
    at = nul + 1;
  }
  const entries: RawSnapshotEntry[] = [];
  for (let i = 0; i + 9 <= fields.length; i += 9) {
    const [p, type, mode, uid, gid, size, mtime, blocks, target] = fields.slice(i, i + 9).map((b) => b!);
    if (options.ignore?.(p!)) continue;
    const t = type!.toString();
    const entry: RawSnapshotEntry = { path: p!.toString('hex'), type: t, mode: mode!.toString(), uid: uid!.toString(), gid: gid!.toString(), mtime: mtime!.toString() };
    if (t === 'f') entry.size = size!.toString();
    if (t === 'l') entry.target = target!.toString('hex');
    if (options.blocks) entry.blocks = Number(blocks!.toString());
    entries.push(entry);
  }
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Every extended attribute (ACLs and capabilities included) below root, as getfattr dumps them, entries sorted. */
export function xattrDump(root: string): string {
  const text = execFileSync('getfattr', ['-R', '-d', '-m', '-', '-e', 'hex', '-P', '.'], { cwd: root, maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] }).toString('latin1');
  return text
    .split('\n\n')
    .map((block) => block.trim())
    .filter(Boolean)
    .map((block) => {
      const [head, ...lines] = block.split('\n');
      return [head, ...lines.sort()].join('\n');
    })
    .sort()
    .join('\n\n');
}

/**
 * Makes a chain of directories below root whose full relative path is longer than `bytes`
 * (components of 200 bytes), with a file at the bottom; returns the path's component names.
 * Built with relative steps (cd), as no single path that long can be passed to the kernel.
 */
export function makeDeepTree(root: string, bytes: number, leafContent = 'deep\n'): string[] {
  const components: string[] = [];
  for (let length = 0; length <= bytes; length += 201) components.push(`${String(components.length).padStart(3, '0')}${'d'.repeat(197)}`);
  const script = `set -e; cd "$1"; shift; for c in "$@"; do mkdir "$c"; cd "$c"; done; printf '%s' "$LEAF" > leaf.txt`;
  execFileSync('bash', ['-c', script, 'deep', root, ...components], { env: { ...process.env, LEAF: leafContent } });
  return components;
}
