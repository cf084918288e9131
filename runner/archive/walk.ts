import fs from 'node:fs';
import path from 'node:path';

/**
 * Depth-first walk of a source tree in a stable order (names sorted), each directory before
 * its contents, as tar stores it. Problems (a directory that cannot be listed, an entry that
 * vanished) come out as entries with `error`, so the caller decides whether to skip or fail.
 */
export interface WalkEntry {
  /** Path relative to the root, '' for the root itself, '/'-separated. */
  rel: string;
  abs: string;
  stat?: fs.Stats;
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

export function* walkTree(root: string, exclude: ExcludeMatcher): Generator<WalkEntry> {
  let rootStat: fs.Stats;
  try {
    rootStat = fs.lstatSync(root);
  } catch (error) {
    yield { rel: '', abs: root, error: error as NodeJS.ErrnoException };
    return;
  }
  yield { rel: '', abs: root, stat: rootStat };
  yield* walkDirectory(root, '', exclude);
}

function* walkDirectory(abs: string, rel: string, exclude: ExcludeMatcher): Generator<WalkEntry> {
  let names: string[];
  try {
    names = fs.readdirSync(abs);
  } catch (error) {
    yield { rel, abs, error: error as NodeJS.ErrnoException };
    return;
  }
  names.sort();
  for (const name of names) {
    const childAbs = path.join(abs, name);
    const childRel = rel === '' ? name : `${rel}/${name}`;
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(childAbs);
    } catch (error) {
      yield { rel: childRel, abs: childAbs, error: error as NodeJS.ErrnoException };
      continue;
    }
    if (exclude(childRel, stat.isDirectory())) continue;
    yield { rel: childRel, abs: childAbs, stat };
    if (stat.isDirectory()) yield* walkDirectory(childAbs, childRel, exclude);
  }
}

/** What kind of tar entry a stat describes; undefined for what tar archives cannot restore safely. */
export function entryKind(stat: fs.Stats): 'file' | 'dir' | 'symlink' | undefined {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'dir';
  if (stat.isSymbolicLink()) return 'symlink';
  return undefined;
}

export function specialFileName(stat: fs.Stats): string {
  if (stat.isSocket()) return 'socket';
  if (stat.isFIFO()) return 'FIFO';
  if (stat.isCharacterDevice()) return 'character device';
  if (stat.isBlockDevice()) return 'block device';
  return 'unsupported file type';
}
