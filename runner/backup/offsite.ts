import type { OffsiteConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { OperationError, RunnerError, describeSystemError } from '../errors.js';
import { humanBytes } from '../log.js';
import { copyArchive } from '../repository/copy.js';
import { LocalRepository } from '../repository/local.js';
import { openRepository } from '../repository/open.js';
import type { Repository, StoredArchive } from '../repository/repository.js';
import { logLockWarnings } from '../store/lock.js';
import { pruneArchives } from '../commands/prune.js';
import { guarded, lockGuarded } from './guard.js';

/**
 * The bucket's lock, leftovers of interrupted uploads, then `steps` under that lock. Shared by
 * the off-site copy and the bucket-only backup.
 */
export async function underBucketLock<T>(offsite: OffsiteConfig, command: string, lockStaleSeconds: number, ctx: RunContext, steps: (bucket: Repository) => Promise<T>): Promise<T> {
  const bucket = guarded(await openRepository({ kind: 'bucket', settings: offsite.settings }), ctx);
  const lock = await lockGuarded(bucket, { command, staleSeconds: lockStaleSeconds, onWarning: logLockWarnings(ctx.log) }, ctx);
  try {
    for (const upload of await bucket.removeLeftovers()) {
      ctx.log.warn('offsite.leftover-removed', `aborted ${upload} in ${bucket.location}, left over by an interrupted run`, { upload });
    }
    return await steps(bucket);
  } finally {
    await lock.release();
  }
}

/** Retention in the bucket, only ever after a verified upload; AccessDenied on delete is a warning (prune.ts). */
export async function pruneBucket(bucket: Repository, prefix: string, offsite: OffsiteConfig, ctx: RunContext): Promise<void> {
  if (!offsite.retention) return;
  await pruneArchives(bucket, prefix, offsite.retention, { dryRun: false, log: ctx.log });
}

/**
 * Layout (a): the archive was made and proven in DEST; it is copied to the bucket (hashed on
 * the way, committed only if it matches its `.sha256`), then the bucket's retention runs. A
 * failed upload fails the run (exit 1), naming the bucket; the local archive stays as it is.
 */
export async function copyOffsite(dest: string, name: string, prefix: string, offsite: OffsiteConfig, lockStaleSeconds: number, ctx: RunContext): Promise<StoredArchive> {
  const local = new LocalRepository(dest);
  const started = Date.now();
  try {
    return await underBucketLock(offsite, 'backup', lockStaleSeconds, ctx, async (bucket) => {
      ctx.log.info('offsite.start', `copying ${name} to ${bucket.location}`, { archive: name, remote: bucket.location });
      const stored = await copyArchive(local, bucket, name, { signal: ctx.signal });
      const seconds = Math.round((Date.now() - started) / 10) / 100;
      ctx.log.info('offsite.done', `${name} copied to ${stored.location} (${humanBytes(stored.size)} in ${seconds}s), size and sha256 checked`, {
        archive: name,
        location: stored.location,
        bytes: stored.size,
        sha256: stored.sha256,
        seconds,
      });
      await pruneBucket(bucket, prefix, offsite, ctx);
      return stored;
    });
  } catch (error) {
    const message = error instanceof RunnerError ? error.message : describeSystemError(error);
    throw new OperationError(`${message}; the archive ${name} in ${dest} is complete and verified, only its off-site copy failed`, error instanceof RunnerError ? error.code : 'OFFSITE', {
      cause: error,
    });
  }
}
