import fs from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { formatChecksumFile } from '../archive/hash.js';
import { writeAll } from '../archive/fd-io.js';
import { OperationError } from '../errors.js';
import { fsyncDirectory, fsyncDirectorySync, removeLeftoverPartials, writeFileAtomic, writeFileAtomicSync, writeStreamAtomic } from '../store/atomic.js';
import { listArchives } from '../store/catalog.js';
import { acquireLock } from '../store/lock.js';
import { infoName, manifestName, partialName, sha256Name, sidecarNames } from '../store/naming.js';
import { deleteArchive, findOrphanedSidecars, removeFiles } from '../store/prune.js';
import type {
  ArchiveSidecars,
  ArchiveSink,
  DeleteOutcome,
  Listing,
  LockOptions,
  ObjectInfo,
  ReadHandle,
  Repository,
  RepositoryLock,
  SidecarSource,
  StoredArchive,
} from './repository.js';

/**
 * The backup directory as a Repository: today's store/ (naming, catalog, atomic writes,
 * deletion, lock) behind the common interface, with the same behaviour.
 */
export class LocalRepository implements Repository {
  readonly kind = 'directory';

  constructor(readonly dir: string) {}

  get location(): string {
    return this.dir;
  }

  async list(prefix: string): Promise<Listing> {
    const archives = (await listArchives(this.dir, prefix)).map(({ mtime, ...rest }) => ({ ...rest, modified: mtime }));
    return { archives, incomplete: [], orphans: await findOrphanedSidecars(this.dir, prefix) };
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    const st = await lstat(this.file(name)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw error;
    });
    return st?.isFile() ? { size: st.size, modified: st.mtime, metadata: {} } : undefined;
  }

  async read(name: string, options: { signal?: AbortSignal } = {}): Promise<ReadHandle> {
    let fd: number;
    try {
      fd = fs.openSync(this.file(name), 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new OperationError(`no ${name} in ${this.dir}`, 'NOT_FOUND', { cause: error });
      throw error;
    }
    const size = fs.fstatSync(fd).size;
    return { stream: fs.createReadStream('', { fd, signal: options.signal, highWaterMark: 1024 * 1024 }), size };
  }

  async readSmall(name: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.file(name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async createArchive(name: string): Promise<ArchiveSink> {
    plainName(name);
    if (fs.existsSync(this.file(name))) throw new OperationError(`${name} already exists in ${this.dir}; archives are never overwritten`, 'EXISTS');
    return new LocalArchiveSink(this.dir, name);
  }

  async putSidecar(name: string, source: SidecarSource): Promise<void> {
    // Local writes are short and synchronous at the end (fsync + rename): no signal needed.
    plainName(name);
    if (typeof source === 'string' || source instanceof Uint8Array) await writeFileAtomic(this.dir, name, source);
    else await writeStreamAtomic(this.dir, name, 'file' in source ? source : source.stream);
  }

  async deleteArchive(name: string): Promise<DeleteOutcome> {
    return { status: 'deleted', removed: await deleteArchive(this.dir, name) };
  }

  async deleteFiles(names: readonly string[]) {
    const outcome = await removeFiles(this.dir, names);
    if (outcome.removed.length > 0) await fsyncDirectory(this.dir);
    return outcome;
  }

  removeLeftovers(): Promise<string[]> {
    return removeLeftoverPartials(this.dir);
  }

  lock(options: LockOptions): Promise<RepositoryLock> {
    return acquireLock(this.dir, options);
  }

  private file(name: string): string {
    return path.join(this.dir, plainName(name));
  }
}

function plainName(name: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\') || name.includes('\0')) {
    throw new OperationError(`"${name}" is not a plain file name`, 'BAD_NAME');
  }
  return name;
}

/**
 * Writes `.<name>.partial` with synchronous calls (a signal handler always sees the partial, or
 * none), fsyncs it, writes both sidecars atomically and only then renames the archive into place.
 */
class LocalArchiveSink implements ArchiveSink {
  bytes = 0;
  private fd: number | undefined;
  private failure: unknown;
  private done = false;
  private readonly partial: string;

  constructor(
    private readonly dir: string,
    readonly name: string,
  ) {
    this.partial = path.join(dir, partialName(name));
    this.fd = fs.openSync(this.partial, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
  }

  append(chunk: Uint8Array): void {
    if (this.failure !== undefined || this.fd === undefined) return;
    try {
      writeAll(this.fd, chunk);
      this.bytes += chunk.length;
    } catch (error) {
      this.failure = error;
    }
  }

  async drain(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
  }

  async commit(sidecars: ArchiveSidecars): Promise<StoredArchive> {
    if (this.done) throw new Error(`${this.name}: commit after the sink was finished`);
    try {
      if (this.failure !== undefined) throw this.failure;
      fs.fsyncSync(this.fd!);
      fs.closeSync(this.fd!);
      this.fd = undefined;
      writeFileAtomicSync(this.dir, sha256Name(this.name), formatChecksumFile(sidecars.sha256, this.name));
      if (sidecars.info !== undefined) writeFileAtomicSync(this.dir, infoName(this.name), sidecars.info);
      const manifest = sidecars.manifest;
      if (typeof manifest === 'string' || manifest instanceof Uint8Array) writeFileAtomicSync(this.dir, manifestName(this.name), manifest);
      else await writeStreamAtomic(this.dir, manifestName(this.name), 'file' in manifest ? manifest : manifest.stream);
      fs.renameSync(this.partial, path.join(this.dir, this.name));
      this.done = true;
      fsyncDirectorySync(this.dir);
      return { name: this.name, size: this.bytes, sha256: sidecars.sha256, location: path.join(this.dir, this.name) };
    } catch (error) {
      if (!this.done) this.discard();
      throw error;
    }
  }

  async abort(): Promise<void> {
    this.abortSync();
  }

  abortSync(): void {
    if (this.done) return;
    this.discard();
  }

  /** Removes the partial and any sidecar a commit stopped midway wrote (the name was free when the sink was created). */
  private discard(): void {
    this.done = true;
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed or the volume is gone: the unlink below is what matters
      }
      this.fd = undefined;
    }
    const files = [this.partial];
    for (const n of sidecarNames(this.name)) files.push(path.join(this.dir, n), path.join(this.dir, partialName(n)));
    for (const f of files) fs.rmSync(f, { force: true });
  }
}
