import { IntegrityError } from '../errors.js';
import { entryTypeOf } from './check.js';
import type { EntryType } from './manifest.js';
import { displayName } from './names.js';
import { type Fingerprint, PathKinds, SymlinkStore, fingerprints } from './path-index.js';
import type { EntrySink, TarEntry, TarVisitor } from './tar-reader.js';

/**
 * Path-safety rules for extracting an archive under a root directory, whatever the archive
 * contains. Pure bookkeeping (no file system access), so the same rules serve a read-only
 * pre-pass, the extractor, and unit tests:
 *
 * - names are normalized (`./a//b/` → `a/b`, `./` → the root itself); absolute names, `..`
 *   components, empty names and NUL bytes are refused;
 * - only regular files, directories, symlinks and hard links are allowed; device nodes, FIFOs
 *   and every other entry type are refused;
 * - a symlink target must be relative and, resolved from the link's directory, stay inside the
 *   root; resolution follows the archive's own symlinks (checked lexically per entry, then again
 *   with the complete set of links at `finish`), so chains like `a -> .` + `b -> a/..` are caught.
 *   Absolute targets are refused: in the restoring pod they point outside the target. With
 *   `allowAbsoluteSymlinks` they are accepted as they are (the extractor never follows a link
 *   while writing, so such a link writes nothing outside), and a relative link resolved through
 *   one ends there;
 * - a hard link must name an earlier regular-file entry of the same archive;
 * - no entry may go through a symlink or a file created earlier by the archive (the
 *   "write through a symlink" attack), and a directory and a non-directory may not share a path.
 *
 * Every refusal is an IntegrityError with code UNSAFE (exit 3).
 *
 * Memory does not grow with the length of the names: what each path holds is kept as a
 * fingerprint in a compact table and symlink targets spill to a temporary file beyond a few
 * thousand (path-index.ts), so a hostile archive of a million entries costs megabytes, not
 * its names.
 */

export type EntryKind = EntryType;

export interface SafeEntry {
  /** Relative to the root, '/'-separated, no `./` and no trailing '/'; '' for the root itself. */
  rel: string;
  kind: EntryKind;
  /** Hard links: the normalized path of the file linked to. */
  linkRel?: string;
}

/** Ancestor or entry kinds as recorded per path; `implicit` is a parent directory the archive never listed. */
type Seen = EntryKind | 'implicit';

const SEEN_CODES: Record<Seen, number> = { dir: 1, implicit: 2, file: 3, symlink: 4, hardlink: 5 };
const SEEN_KINDS: (Seen | undefined)[] = [undefined, 'dir', 'implicit', 'file', 'symlink', 'hardlink'];

/** Symlink targets by root-relative path. */
export interface LinkLookup {
  get(rel: string): string | undefined;
}

const MAX_LINK_DEPTH = 40;

export interface SafetyOptions {
  /** Accept symlinks with absolute targets (recreated verbatim) instead of refusing the archive. */
  allowAbsoluteSymlinks?: boolean;
}

/** What resolveLinkTarget returns for a path that ends at an absolute symlink target (allowed ones only). */
export const ABSOLUTE_TARGET: readonly string[] = Object.freeze(['/']);

export class UnsafeEntryError extends IntegrityError {
  constructor(
    readonly entryPath: string,
    readonly reason: string,
  ) {
    super(`refusing to restore: archive entry ${JSON.stringify(displayName(entryPath))} ${reason}; nothing was written to the target`, 'UNSAFE');
  }
}

/** Maps a tar entry type to what may be restored; undefined for everything that is refused. */
export const restorableKind: (tarType: string) => EntryKind | undefined = entryTypeOf;

function describeType(tarType: string): string {
  switch (tarType) {
    case 'CharacterDevice':
      return 'is a character device node';
    case 'BlockDevice':
      return 'is a block device node';
    case 'FIFO':
      return 'is a FIFO';
    default:
      return `has unsupported entry type ${tarType}`;
  }
}

/**
 * Normalizes an archive path to a root-relative path ('' is the root). Throws UnsafeEntryError
 * for absolute paths, `..` components, empty names and NUL bytes.
 */
export function normalizeEntryPath(raw: string): string {
  if (raw === '') throw new UnsafeEntryError(raw, 'has an empty name');
  if (raw.includes('\0')) throw new UnsafeEntryError(raw, 'has a NUL byte in its name');
  if (raw.startsWith('/')) throw new UnsafeEntryError(raw, 'is an absolute path');
  const parts: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new UnsafeEntryError(raw, 'has a ".." component');
    parts.push(part);
  }
  return parts.join('/');
}

function parentOf(rel: string): string {
  const slash = rel.lastIndexOf('/');
  return slash === -1 ? '' : rel.slice(0, slash);
}

/**
 * Resolves a symlink target from the directory `dirParts` (components under the root).
 * Returns the resolved components, or undefined when the target leaves the root. With
 * `links`, components that are symlinks of the archive are followed (up to 40 levels, like the
 * kernel; a deeper chain cannot be followed at all, so it counts as staying inside). With
 * `allowAbsolute`, an absolute target (also one met on the way) ends the resolution with
 * ABSOLUTE_TARGET instead of counting as leaving the root.
 */
export function resolveLinkTarget(
  dirParts: readonly string[],
  target: string,
  links?: LinkLookup,
  depth = 0,
  allowAbsolute = false,
): readonly string[] | undefined {
  if (target.startsWith('/')) return allowAbsolute ? ABSOLUTE_TARGET : undefined;
  let parts = [...dirParts];
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) return undefined;
      parts.pop();
      continue;
    }
    parts.push(part);
    const linked = links?.get(parts.join('/'));
    if (linked === undefined) continue;
    if (depth >= MAX_LINK_DEPTH) return parts;
    parts.pop();
    const resolved = resolveLinkTarget(parts, linked, links, depth + 1, allowAbsolute);
    if (!resolved || resolved === ABSOLUTE_TARGET) return resolved;
    parts = [...resolved];
  }
  return parts;
}

/** True when a symlink at `linkRel` pointing at `target` leaves the root (lexically, without following other links). */
export function symlinkEscapes(linkRel: string, target: string): boolean {
  const dir = parentOf(linkRel);
  return resolveLinkTarget(dir === '' ? [] : dir.split('/'), target) === undefined;
}

/**
 * The stateful rule set for one archive, fed every entry in order. Also a TarVisitor, so a
 * read-only safety pass is `readArchive(file, c, new SafetyRules())` + `finish()`.
 */
export class SafetyRules implements TarVisitor {
  /** What each path holds so far (the archive's view of the tree it creates), by fingerprint. */
  private readonly seen = new PathKinds();
  /** Symlinks created so far: path → target. */
  readonly symlinks = new SymlinkStore();
  /** Sum of regular file sizes (the data the archive stores, sparse files without holes). */
  totalBytes = 0;
  entries = 0;
  private readonly allowAbsolute: boolean;

  constructor(options: SafetyOptions = {}) {
    fingerprints('', (_end, fp) => this.seen.set(fp, SEEN_CODES.dir));
    this.allowAbsolute = options.allowAbsoluteSymlinks === true;
  }

  entry(entry: TarEntry): EntrySink | undefined {
    this.check(entry);
    return undefined;
  }

  /** Validates one entry in archive order and records it; throws UnsafeEntryError when refused. */
  check(entry: TarEntry): SafeEntry {
    const kind = restorableKind(entry.type);
    if (!kind) throw new UnsafeEntryError(entry.path, describeType(entry.type));
    const rel = normalizeEntryPath(entry.path);
    this.entries++;
    if (rel === '') {
      if (kind !== 'dir') throw new UnsafeEntryError(entry.path, 'would replace the target directory itself with a non-directory');
      return { rel, kind };
    }
    const own = this.checkAncestors(entry.path, rel);
    const previous = SEEN_KINDS[this.seen.get(own)];
    if (previous !== undefined) {
      const wasDir = previous === 'dir' || previous === 'implicit';
      if (wasDir !== (kind === 'dir')) {
        throw new UnsafeEntryError(entry.path, `would replace a ${wasDir ? 'directory' : previous} created earlier by the archive with a ${kind}`);
      }
    }
    let linkRel: string | undefined;
    if (kind === 'symlink') {
      if (entry.linkpath === '') throw new UnsafeEntryError(entry.path, 'is a symlink with an empty target');
      if (entry.linkpath.includes('\0')) throw new UnsafeEntryError(entry.path, 'is a symlink whose target has a NUL byte');
      if (entry.linkpath.startsWith('/') && !this.allowAbsolute) {
        throw new UnsafeEntryError(
          entry.path,
          `is a symlink to the absolute path ${JSON.stringify(displayName(entry.linkpath))}, outside the target (--allow-absolute-symlinks recreates such links as they are)`,
        );
      }
      const dir = parentOf(rel);
      if (!resolveLinkTarget(dir === '' ? [] : dir.split('/'), entry.linkpath, this.symlinks, 0, this.allowAbsolute)) {
        throw new UnsafeEntryError(entry.path, `is a symlink to ${JSON.stringify(displayName(entry.linkpath))}, which points outside the target`);
      }
      this.symlinks.set(rel, entry.linkpath);
    } else if (previous === 'symlink') {
      this.symlinks.delete(rel);
    }
    if (kind === 'hardlink') {
      let target: string;
      try {
        target = normalizeEntryPath(entry.linkpath);
      } catch {
        throw new UnsafeEntryError(entry.path, `is a hard link to ${JSON.stringify(displayName(entry.linkpath))}, outside the target`);
      }
      let targetKind: Seen | undefined;
      fingerprints(target, (end, fp) => {
        if (end === target.length) targetKind = SEEN_KINDS[this.seen.get(fp)];
      });
      if (target === rel || (targetKind !== 'file' && targetKind !== 'hardlink')) {
        throw new UnsafeEntryError(entry.path, `is a hard link to ${JSON.stringify(displayName(entry.linkpath))}, which is not a regular file earlier in the archive`);
      }
      linkRel = target;
    }
    if (kind === 'file') this.totalBytes += entry.storedSize ?? entry.size;
    if (previous !== 'dir') this.seen.set(own, SEEN_CODES[kind]);
    return linkRel === undefined ? { rel, kind } : { rel, kind, linkRel };
  }

  /** Every ancestor must be a directory (listed or implicit); records implicit parents. Returns the entry's own fingerprint. */
  private checkAncestors(raw: string, rel: string): Fingerprint {
    let own: Fingerprint | undefined;
    fingerprints(rel, (end, fp) => {
      if (end === rel.length) {
        own = fp;
        return;
      }
      const seen = SEEN_KINDS[this.seen.get(fp)];
      if (seen === undefined) this.seen.set(fp, SEEN_CODES.implicit);
      else if (seen === 'symlink') throw new UnsafeEntryError(raw, `would be written through the symlink ./${displayName(rel.slice(0, end))} created earlier by the archive`);
      else if (seen !== 'dir' && seen !== 'implicit') throw new UnsafeEntryError(raw, `would be written below ./${displayName(rel.slice(0, end))}, which the archive created as a ${seen}`);
    });
    return own!;
  }

  /**
   * Checks what needs the whole archive: every symlink, resolved through the archive's complete
   * set of symlinks, still stays inside the root. Throws UnsafeEntryError otherwise.
   */
  finish(): void {
    try {
      for (const [rel, target] of this.symlinks.entries()) {
        const dir = parentOf(rel);
        if (!resolveLinkTarget(dir === '' ? [] : dir.split('/'), target, this.symlinks, 0, this.allowAbsolute)) {
          throw new UnsafeEntryError(`./${rel}`, `is a symlink to ${JSON.stringify(displayName(target))}, which through other symlinks of the archive points outside the target`);
        }
      }
    } finally {
      this.close();
    }
  }

  /** Releases the temporary files of a rule set that will not be finished (a failed read). */
  close(): void {
    this.symlinks.close();
    this.seen.close();
  }
}

/**
 * The safety rules as a verdict instead of an exception, for verify: the first entry restore
 * would refuse is recorded and the read goes on (verify reads the whole archive anyway).
 */
export class RestorabilityCheck implements TarVisitor {
  readonly rules: SafetyRules;
  private refusal: UnsafeEntryError | undefined;

  constructor(options: SafetyOptions = {}) {
    this.rules = new SafetyRules(options);
  }

  entry(entry: TarEntry): EntrySink | undefined {
    if (this.refusal) return undefined;
    try {
      this.rules.check(entry);
    } catch (error) {
      if (!(error instanceof UnsafeEntryError)) throw error;
      this.refusal = error;
    }
    return undefined;
  }

  /** After the whole archive was read: the entry restore would refuse, if any. */
  finish(): UnsafeEntryError | undefined {
    if (this.refusal) {
      this.rules.close();
      return this.refusal;
    }
    try {
      this.rules.finish();
    } catch (error) {
      if (!(error instanceof UnsafeEntryError)) throw error;
      this.refusal = error;
    }
    return this.refusal;
  }

  /** Releases the rules' temporary file when the read failed before finish. */
  close(): void {
    this.rules.close();
  }
}
