import fs from 'node:fs';
import { encodeName } from './names.js';

/**
 * Paths of any depth. The kernel refuses a path argument of PATH_MAX (4096) bytes or more, and
 * Node.js has no openat(), so a directory deeper than that is reached through an open
 * descriptor: `/proc/<pid>/fd/<n>/<name>` resolves <name> inside the directory held by fd n,
 * whatever its own path length (the `<pid>` form rather than `self`, so the system-call helper
 * process can use the same paths). Shallow paths stay plain absolute paths: the common case
 * costs nothing extra.
 */

/** A directory's path may grow to this many bytes before a descriptor stands in for it. */
const SHORT_ENOUGH = 3000;

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;

/** A directory to name things in: either its absolute path or an open descriptor. */
export class DirectoryBase {
  /** Byte prefix every child path starts with (ends with '/'). */
  readonly prefix: Buffer;

  private constructor(
    prefix: Buffer,
    readonly fd: number | undefined,
  ) {
    this.prefix = prefix;
  }

  static ofPath(absolute: string): DirectoryBase {
    const bytes = encodeName(absolute);
    return new DirectoryBase(bytes[bytes.length - 1] === 0x2f ? bytes : Buffer.concat([bytes, SLASH]), undefined);
  }

  /** Opens the directory `path` (never following a symlink at its end) as a descriptor base. */
  static open(path: Buffer): DirectoryBase {
    const fd = fs.openSync(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    return new DirectoryBase(Buffer.from(`/proc/${process.pid}/fd/${fd}/`), fd);
  }

  /** The path of `name` (a lossless string or its bytes) inside this directory. */
  child(name: string | Buffer): Buffer {
    return Buffer.concat([this.prefix, typeof name === 'string' ? encodeName(name) : name]);
  }

  /** The path of this directory itself. */
  get self(): Buffer {
    return this.fd === undefined ? this.prefix.subarray(0, Math.max(1, this.prefix.length - 1)) : this.prefix.subarray(0, this.prefix.length - 1);
  }

  /** The base for a subdirectory: its path, or a descriptor once that path grows long. */
  descend(name: string | Buffer): DirectoryBase {
    const path = this.child(name);
    if (path.length < SHORT_ENOUGH) return new DirectoryBase(Buffer.concat([path, SLASH]), undefined);
    return DirectoryBase.open(path);
  }

  /** Closes the descriptor, if this base holds one. */
  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
  }
}

const SLASH = Buffer.from('/');

/**
 * Paths for entries below one root, named by relative path (`a/b/c`, lossless strings), for a
 * writer that visits them in roughly depth-first order (a restore). Deep directories are held
 * open in a small cache keyed by their relative path; each is opened from its parent with
 * O_NOFOLLOW, so no symlink is ever followed on the way down.
 */
export class TreePaths {
  private readonly rootBase: DirectoryBase;
  private readonly rootBytes: Buffer;
  private readonly open = new Map<string, DirectoryBase>();

  constructor(readonly root: string) {
    this.rootBase = DirectoryBase.ofPath(root);
    this.rootBytes = this.rootBase.prefix;
  }

  /** A path for the entry at `rel` ('' is the root itself). */
  path(rel: string): Buffer | string {
    if (rel === '') return this.root;
    const slash = rel.lastIndexOf('/');
    const name = slash === -1 ? rel : rel.slice(slash + 1);
    return this.directory(slash === -1 ? '' : rel.slice(0, slash)).child(name);
  }

  /** The base of the directory at `rel`; it must exist when its path is long. */
  directory(rel: string): DirectoryBase {
    if (rel === '') return this.rootBase;
    const bytes = encodeName(rel);
    if (this.rootBytes.length + bytes.length < SHORT_ENOUGH) return DirectoryBase.ofPath(this.root + '/' + rel);
    const cached = this.open.get(rel);
    if (cached) {
      // Most recently used last.
      this.open.delete(rel);
      this.open.set(rel, cached);
      return cached;
    }
    const slash = rel.lastIndexOf('/');
    const parent = this.directory(slash === -1 ? '' : rel.slice(0, slash));
    const base = DirectoryBase.open(parent.child(slash === -1 ? rel : rel.slice(slash + 1)));
    this.open.set(rel, base);
    if (this.open.size > 64) {
      const [oldest, old] = this.open.entries().next().value!;
      this.open.delete(oldest);
      old.close();
    }
    return base;
  }

  /** Forgets a directory (after it was removed or renamed) and everything cached below it. */
  forget(rel: string): void {
    for (const [key, base] of this.open) {
      if (key === rel || key.startsWith(rel + '/')) {
        this.open.delete(key);
        base.close();
      }
    }
  }

  close(): void {
    for (const base of this.open.values()) base.close();
    this.open.clear();
  }
}
