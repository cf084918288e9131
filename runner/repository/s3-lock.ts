import { randomBytes, createHash } from 'node:crypto';
import os from 'node:os';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { LockHeldError, OperationError, RunnerError } from '../errors.js';
import { LOCK_FILE } from '../store/naming.js';
import type { LockOptions, LockWarning, RepositoryLock } from './repository.js';
import type { BucketClient } from './s3-client.js';
import { isNotFound, isPreconditionFailed } from './s3-errors.js';
import { type S3Location, objectKey } from './s3-settings.js';

/**
 * The lock of a bucket key prefix: the object `KEY-PREFIX/.pvc-backup.lock`, the bucket's
 * counterpart of the directory's lock file. It keeps two runs from working on the same key
 * prefix at once, which matters because the next run aborts the multipart uploads it finds
 * there (it must not abort a live run's upload), because two backups in the same second would
 * pick the same name (CompleteMultipartUpload overwrites: RGW 16 ignores If-None-Match on it),
 * and because prune must not race a backup.
 *
 * - Created with a conditional PUT (`If-None-Match: *`, atomic on AWS S3 since 2024, Ceph RGW,
 *   MinIO); the content is JSON {host, pid, command, startedAt, token}, then read back: a store
 *   that ignored the condition and let a contender overwrite it shows the contender's token.
 * - While held, a heartbeat reads it back every min(30 s, stale / 3) and, while it still holds
 *   our token, writes it again, which refreshes LastModified; another token (or none) means
 *   another run replaced it, and the lock is reported lost. (Not `If-Match` on the PUT: Ceph RGW
 *   16 compares it against the unquoted ETag and refuses the correct, quoted one.)
 * - It is stale when its LastModified is older than the stale age on the store's own clock
 *   (from its Date header, so a pod's skewed clock does not matter), or when it names this host
 *   and a process that no longer runs (or this very process, which does not hold it: a restarted
 *   container). A stale lock is deleted with a warning and taken again with the conditional PUT;
 *   of two runs that judge it stale at once only one wins that PUT.
 * - A lock cannot be removed synchronously in a signal handler: after SIGKILL (or a SIGTERM whose
 *   handler does not wait) it stays until it goes stale, or until a run on the same host sees
 *   that its process is gone.
 */

export interface LockContent {
  host: string;
  pid: number;
  command: string;
  startedAt: string;
  token: string;
}

function parseContent(raw: string): LockContent | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LockContent> | null;
    if (v && typeof v.host === 'string' && typeof v.pid === 'number' && typeof v.command === 'string' && typeof v.startedAt === 'string' && typeof v.token === 'string') {
      return { host: v.host, pid: v.pid, command: v.command, startedAt: v.startedAt, token: v.token };
    }
  } catch {
    // not ours, or written by a store that mangled it: judged by its age only
  }
  return undefined;
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Tokens of the bucket locks this process holds right now. */
const heldTokens = new Set<string>();

export async function acquireBucketLock(client: BucketClient, location: S3Location, options: LockOptions): Promise<RepositoryLock> {
  if (!(options.staleSeconds > 0)) throw new RangeError(`staleSeconds must be more than 0, got ${options.staleSeconds}`);
  const warn: LockWarning = options.onWarning ?? (() => undefined);
  const key = objectKey(location, LOCK_FILE);
  const where = `${client.location}/${LOCK_FILE}`;
  const content: LockContent = {
    host: os.hostname(),
    pid: process.pid,
    command: options.command,
    startedAt: new Date().toISOString(),
    token: randomBytes(12).toString('hex'),
  };
  const body = JSON.stringify(content) + '\n';
  const md5 = createHash('md5').update(body).digest('base64');

  for (let attempt = 0; attempt < 5; attempt++) {
    let created = false;
    try {
      await client.send(
        new PutObjectCommand({ Bucket: client.bucket, Key: key, Body: body, ContentMD5: md5, ContentType: 'application/json', IfNoneMatch: '*' }),
        `take the lock ${where}`,
        { raw: true },
      );
      created = true;
    } catch (error) {
      if (!isPreconditionFailed(error)) throw client.describe(error, `take the lock ${where}`);
    }
    const seen = await readLock(client, key, where);
    if (created && seen?.content?.token === content.token) {
      heldTokens.add(content.token);
      return new BucketLock(client, key, where, body, md5, content.token, options.staleSeconds, warn);
    }
    if (!seen) continue; // released between our attempt and the read
    const reason = staleReason(seen, options.staleSeconds, client.serverNow());
    if (!reason) {
      const holder = seen.content ? `${seen.content.command} on ${seen.content.host} (pid ${seen.content.pid}) since ${seen.content.startedAt}` : 'an unreadable lock';
      throw new LockHeldError(
        `${client.location} is locked by ${holder}; last heartbeat ${seen.modified.toISOString()}, it counts as stale ${options.staleSeconds}s after that. ` +
          'Wait for that run to finish, or delete the lock object if you are sure it is not running',
      );
    }
    try {
      await client.send(new DeleteObjectCommand({ Bucket: client.bucket, Key: key }), `break the stale lock ${where}`, { raw: true });
    } catch (error) {
      if (!isNotFound(error)) throw client.describe(error, `break the stale lock ${where}`);
    }
    warn(`breaking stale lock on ${client.location} held by ${seen.content ? `${seen.content.command} on ${seen.content.host} (pid ${seen.content.pid})` : 'an unreadable lock'}: ${reason}`, {
      lock: where,
      holderHost: seen.content?.host,
      holderPid: seen.content?.pid,
      holderCommand: seen.content?.command,
      holderStartedAt: seen.content?.startedAt,
      heartbeat: seen.modified.toISOString(),
    });
  }
  throw new OperationError(`cannot take the lock ${where}: it keeps changing; is another run starting and stopping in a loop?`, 'LOCK');
}

interface SeenLock {
  content: LockContent | undefined;
  modified: Date;
}

async function readLock(client: BucketClient, key: string, where: string): Promise<SeenLock | undefined> {
  try {
    const answer = await client.send(new GetObjectCommand({ Bucket: client.bucket, Key: key }), `read the lock ${where}`, { raw: true });
    const raw = await answer.Body!.transformToString();
    return { content: parseContent(raw), modified: answer.LastModified ?? new Date(0) };
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw client.describe(error, `read the lock ${where}`);
  }
}

function staleReason(seen: SeenLock, staleSeconds: number, serverNow: number): string | undefined {
  // LastModified has second precision: allow that second before calling it old.
  const age = (serverNow - seen.modified.getTime()) / 1000 - 1;
  if (age > staleSeconds) return `no heartbeat for ${Math.round(age)}s (stale after ${staleSeconds}s)`;
  const holder = seen.content;
  if (holder && holder.host === os.hostname()) {
    if (holder.pid === process.pid && !heldTokens.has(holder.token)) return `it names this process (pid ${holder.pid}), which does not hold it: a restarted container`;
    if (holder.pid !== process.pid && !processRuns(holder.pid)) return `process ${holder.pid} on this host no longer runs`;
  }
  return undefined;
}

class BucketLock implements RepositoryLock {
  lost = false;
  private released = false;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;

  constructor(
    private readonly client: BucketClient,
    private readonly key: string,
    private readonly where: string,
    private readonly body: string,
    private readonly md5: string,
    private readonly token: string,
    staleSeconds: number,
    private readonly warn: LockWarning,
  ) {
    const interval = Math.max(200, Math.min(30_000, (staleSeconds * 1000) / 3));
    this.timer = setInterval(() => {
      if (!this.beating) this.beating = this.beat().finally(() => (this.beating = undefined));
    }, interval);
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    try {
      const seen = await readLock(this.client, this.key, this.where);
      if (this.released) return;
      if (seen?.content?.token !== this.token) {
        this.markLost(seen ? 'replaced by another run' : 'removed');
        return;
      }
      await this.client.send(
        new PutObjectCommand({ Bucket: this.client.bucket, Key: this.key, Body: this.body, ContentMD5: this.md5, ContentType: 'application/json' }),
        `refresh the lock ${this.where}`,
      );
    } catch (error) {
      if (this.released) return;
      const message = error instanceof RunnerError ? error.message : this.client.describe(error, `refresh the lock ${this.where}`).message;
      this.warn(`cannot refresh lock heartbeat on ${this.where}: ${message}`, { lock: this.where });
    }
  }

  private markLost(how: string): void {
    if (this.lost) return;
    this.lost = true;
    this.stop();
    this.warn(`lock ${this.where} was ${how} while this run held it; another run may now use ${this.client.location}`, { lock: this.where });
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.stop();
    await this.beating;
    heldTokens.delete(this.token);
    if (this.lost) return;
    try {
      const seen = await readLock(this.client, this.key, this.where);
      if (seen?.content?.token === this.token) {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.client.bucket, Key: this.key }), `remove the lock ${this.where}`, { raw: true });
      }
    } catch (error) {
      if (!isNotFound(error)) {
        const message = error instanceof RunnerError ? error.message : this.client.describe(error, `remove the lock ${this.where}`).message;
        this.warn(`cannot remove lock ${this.where}: ${message}; it goes stale by itself`, { lock: this.where });
      }
    }
  }

  releaseSync(): void {
    // Nothing can reach the store synchronously: stop beating so the lock goes stale.
    this.released = true;
    this.stop();
    heldTokens.delete(this.token);
  }
}
