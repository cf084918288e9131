import fs from 'node:fs';
import path from 'node:path';
import { RunnerError } from '../errors.js';
import { NAMES_IN_MEMORY, NameListing } from './listing.js';
import { DirectoryBase } from './long-paths.js';

/**
 * Depth-first walk of a source tree in a stable order (names sorted, see compareWalkOrder),
 * each directory before its contents, as tar stores it. Names are read as bytes (a name that is
 * not valid UTF-8 keeps its exact bytes, see names.ts), and directories of any depth are walked
 * (see long-paths.ts). Problems (a directory that cannot be listed, an entry that vanished)
 * come out as entries with `error`, so the caller decides whether to skip or fail.
 */
export interface WalkEntry {
  /** Path relative to the root, '' for the root itself, '/'-separated, lossless (names.ts). */
  rel: string;
  /** A path for system calls on this entry (absolute, or through a directory descriptor). */
  path: Buffer;
  /** lstat with nanosecond times. */
  stat?: fs.BigIntStats;
  error?: NodeJS.ErrnoException;
}

export type ExcludeMatcher = (rel: string, isDirectory: boolean) => boolean;

/**
 * Exclude patterns behave like GNU tar's and .gitignore's: a pattern without "/" matches an
 * entry's name at any depth (`*.log`, `cache`); a pattern with "/" matches the whole path
 * relative to the source (`tmp/*.part`, `db/wal`); a trailing "/" matches directories only.
 * Excluding a directory excludes everything below it.
 */
export function excludeMatcher(patterns: readonly string[]): ExcludeMatcher {
  const compiled = patterns.map((raw) => {
    let pattern = raw.replace(/^\.\//, '');
    const directoryOnly = pattern.endsWith('/');
    if (directoryOnly) pattern = pattern.replace(/\/+$/, '');
    const anchored = pattern.includes('/');
    if (pattern.startsWith('/')) pattern = pattern.slice(1);
    return { pattern, directoryOnly, anchored };
  });
  return (rel, isDirectory) =>
    compiled.some(({ pattern, directoryOnly, anchored }) => {
      if (directoryOnly && !isDirectory) return false;
      const subject = anchored ? rel : path.posix.basename(rel);
      return path.matchesGlob(subject, pattern);
    });
}

/**
 * A walk of one tree. Descriptors of deep directories (long-paths.ts) are closed only once
 * `closeDelay` more entries were produced, so a consumer that reads up to that many entries
 * ahead can still use every entry's path; `close()` releases the rest.
 */
export class TreeWalker {
  private produced = 0;
  private readonly toClose: { after: number; base: DirectoryBase }[] = [];

  constructor(
    private readonly root: string,
    private readonly exclude: ExcludeMatcher,
    private readonly closeDelay = 0,
    private readonly namesInMemory = NAMES_IN_MEMORY,
  ) {}

  *entries(): Generator<WalkEntry> {
    const base = DirectoryBase.ofPath(this.root);
    const rootPath = base.self;
    let rootStat: fs.BigIntStats;
    try {
      rootStat = fs.lstatSync(rootPath, { bigint: true });
    } catch (error) {
      yield { rel: '', path: rootPath, error: error as NodeJS.ErrnoException };
      return;
    }
    yield this.count({ rel: '', path: rootPath, stat: rootStat });
    yield* this.directory(base, '');
  }

  close(): void {
    for (const { base } of this.toClose.splice(0)) base.close();
  }

  private count(entry: WalkEntry): WalkEntry {
    this.produced++;
    while (this.toClose.length > 0 && this.toClose[0]!.after <= this.produced) this.toClose.shift()!.base.close();
    return entry;
  }

  private *directory(base: DirectoryBase, rel: string): Generator<WalkEntry> {
    let names: NameListing;
    try {
      names = NameListing.read(base.self, this.namesInMemory);
    } catch (error) {
      if (error instanceof RunnerError) throw error;
      yield this.count({ rel, path: base.self, error: error as NodeJS.ErrnoException });
      return;
    }
    try {
      yield* this.entriesOf(base, rel, names);
    } finally {
      names.close();
    }
  }

  private *entriesOf(base: DirectoryBase, rel: string, names: Iterable<string>): Generator<WalkEntry> {
    for (const name of names) {
      const childPath = base.child(name);
      const childRel = rel === '' ? name : `${rel}/${name}`;
      let stat: fs.BigIntStats;
      try {
        stat = fs.lstatSync(childPath, { bigint: true });
      } catch (error) {
        yield this.count({ rel: childRel, path: childPath, error: error as NodeJS.ErrnoException });
        continue;
      }
      if (this.exclude(childRel, stat.isDirectory())) continue;
      yield this.count({ rel: childRel, path: childPath, stat });
      if (!stat.isDirectory()) continue;
      let child: DirectoryBase;
      try {
        child = base.descend(name);
      } catch (error) {
        yield this.count({ rel: childRel, path: childPath, error: error as NodeJS.ErrnoException });
        continue;
      }
      try {
        yield* this.directory(child, childRel);
      } finally {
        if (child.fd !== undefined) this.toClose.push({ after: this.produced + this.closeDelay, base: child });
        if (this.closeDelay === 0) this.close();
      }
    }
  }
}

/** Every entry of a tree, in walk order (for consumers that do not read ahead). */
export function* walkTree(root: string, exclude: ExcludeMatcher): Generator<WalkEntry> {
  const walker = new TreeWalker(root, exclude);
  try {
    yield* walker.entries();
  } finally {
    walker.close();
  }
}

/** What kind of tar entry a stat describes; undefined for what tar archives cannot restore safely. */
export function entryKind(stat: fs.Stats | fs.BigIntStats): 'file' | 'dir' | 'symlink' | undefined {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'dir';
  if (stat.isSymbolicLink()) return 'symlink';
  return undefined;
}

export function specialFileName(stat: fs.Stats | fs.BigIntStats): string {
  if (stat.isSocket()) return 'socket';
  if (stat.isFIFO()) return 'FIFO';
  if (stat.isCharacterDevice()) return 'character device';
  if (stat.isBlockDevice()) return 'block device';
  return 'unsupported file type';
}

/** Seconds (floor) and nanoseconds (0–999999999) of a BigInt nanosecond time. */
export function splitNanoseconds(ns: bigint): { sec: number; nsec: number } {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}
