import { displayName } from '../archive/names.js';
import { UsageError } from '../errors.js';
import type { IndexEntry } from './plan.js';

/**
 * The part of an archive a restore writes (`restore --path`): files or directory subtrees, as
 * root-relative paths the way the archive stores them ("etc/app.conf", "data/db").
 */
export class PathSelection {
  readonly paths: readonly string[];

  constructor(paths: readonly string[]) {
    // A path inside another selected one adds nothing.
    const sorted = [...new Set(paths)].sort();
    this.paths = sorted.filter((p) => !sorted.some((q) => q !== p && within(p, q)));
  }

  /** Whether the entry at rel is written: it is a selected path or lies below one. */
  includes(rel: string): boolean {
    return this.paths.some((p) => rel === p || within(rel, p));
  }

  /** The selected paths as the archive shows them (`./etc/app.conf`). */
  describe(): string {
    return this.paths.map((p) => `./${displayName(p)}`).join(', ');
  }
}

/** Whether rel lies strictly below the directory dir. */
function within(rel: string, dir: string): boolean {
  return rel.length > dir.length && rel.startsWith(dir) && rel.charCodeAt(dir.length) === 0x2f;
}

/**
 * One `--path` value as a root-relative path: a leading `./` and trailing slashes are dropped;
 * an absolute path, `..`, or the whole archive (`.`) is a usage error.
 */
export function parseRestorePath(text: string, label = '--path'): string {
  if (text.startsWith('/')) throw new UsageError(`${label} "${text}" is absolute; give it as the archive stores it, relative to the volume root (e.g. ./etc/app.conf)`);
  let rel = text;
  while (rel.startsWith('./')) rel = rel.slice(2).replace(/^\/+/, '');
  rel = rel.replace(/\/+$/, '');
  const parts = rel.split('/');
  if (rel === '' || rel === '.') throw new UsageError(`${label} "${text}" names the whole archive; leave --path out to restore everything`);
  if (parts.some((p) => p === '' || p === '.' || p === '..')) throw new UsageError(`${label} "${text}" is not a plain path inside the archive (no "..", "." or empty parts)`);
  if (rel.includes('\0')) throw new UsageError(`${label} must not contain a NUL byte`);
  return rel;
}

/**
 * Checks the selection against the archive's entries (from its manifest, or the index built while
 * reading it) before anything is written: every path must be in the archive (a file, or a
 * directory listed or implied by its contents), none may lead through a symlink the archive
 * holds, and a hard link that is selected must have its target selected too (it is made by
 * linking to that file). Usage errors (exit 2) name the paths.
 */
export function checkSelection(selection: PathSelection, entries: Iterable<IndexEntry>, archive: string): void {
  const found = new Set<string>();
  for (const entry of entries) {
    for (const p of selection.paths) {
      if (entry.rel === p || within(entry.rel, p)) found.add(p);
      if (entry.kind === 'symlink' && within(p, entry.rel)) {
        throw new UsageError(
          `--path ./${displayName(p)} leads through ./${displayName(entry.rel)}, which is a symlink in ${archive} (to ${displayName(entry.link ?? '')}); a restore never follows symlinks, so give a path without symlinks (or ./${displayName(entry.rel)} itself)`,
          'PATH_THROUGH_SYMLINK',
        );
      }
    }
    if (entry.kind === 'hardlink' && entry.link !== undefined && selection.includes(entry.rel) && !selection.includes(entry.link)) {
      throw new UsageError(`./${displayName(entry.rel)} in ${archive} is a hard link to ./${displayName(entry.link)}, which is not selected; add --path ./${displayName(entry.link)} too`, 'PATH_LINK_OUTSIDE');
    }
  }
  const missing = selection.paths.filter((p) => !found.has(p));
  if (missing.length > 0) {
    throw new UsageError(`${missing.map((p) => `./${displayName(p)}`).join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in ${archive}; nothing was restored (list its contents with tar -t, or check the spelling)`, 'PATH_NOT_IN_ARCHIVE');
  }
}
