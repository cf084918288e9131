import type { RunContext } from '../context.js';
import type { ArchiveSidecars, ArchiveSink, LockOptions, Repository, RepositoryLock, StoredArchive } from '../repository/repository.js';

/**
 * A repository whose unfinished sinks are aborted, and whose lock is released, when a signal
 * stops the run: each sink is registered with the run's cleanup from creation until it is
 * committed or aborted (a bucket's AbortMultipartUpload needs the network, so it is an async
 * action the signal handler waits for within its budget).
 */
export function guarded(repository: Repository, ctx: RunContext): Repository {
  const wrapper: Repository = Object.create(repository);
  wrapper.createArchive = async (name, options) => {
    const sink = await repository.createArchive(name, { ...options, signal: options?.signal ?? ctx.signal });
    const forgetSync = ctx.cleanup.add(`remove the unfinished ${name}`, () => sink.abortSync());
    const forgetAsync = ctx.cleanup.addAsync(`abort the upload of ${name}`, () => sink.abort());
    const forget = () => {
      forgetSync();
      forgetAsync();
    };
    return new GuardedSink(sink, forget);
  };
  return wrapper;
}

/** Takes the repository's lock, released on a signal too (a bucket lock asynchronously, within the budget). */
export async function lockGuarded(repository: Repository, options: LockOptions, ctx: RunContext): Promise<{ release(): Promise<void> }> {
  const lock: RepositoryLock = await repository.lock(options);
  // A bucket lock cannot be removed synchronously (releaseSync would only stop its heartbeat, and
  // then release() could not remove it any more): on a signal it is removed by the async action.
  const forgetSync = repository.kind === 'bucket' ? () => {} : ctx.cleanup.add('release the lock', () => lock.releaseSync());
  const forgetAsync = repository.kind === 'bucket' ? ctx.cleanup.addAsync(`release the lock in ${repository.location}`, () => lock.release()) : () => {};
  return {
    release: async () => {
      forgetSync();
      forgetAsync();
      await lock.release();
    },
  };
}

/** A sink that unregisters its cleanup actions once it is committed or aborted. */
class GuardedSink implements ArchiveSink {
  constructor(
    private readonly sink: ArchiveSink,
    private readonly forget: () => void,
  ) {}

  get name(): string {
    return this.sink.name;
  }

  get bytes(): number {
    return this.sink.bytes;
  }

  append(chunk: Uint8Array): void {
    this.sink.append(chunk);
  }

  drain(): Promise<void> {
    return this.sink.drain();
  }

  async commit(sidecars: ArchiveSidecars): Promise<StoredArchive> {
    try {
      return await this.sink.commit(sidecars);
    } finally {
      this.forget();
    }
  }

  async abort(): Promise<void> {
    try {
      await this.sink.abort();
    } finally {
      this.forget();
    }
  }

  abortSync(): void {
    this.sink.abortSync();
  }
}
