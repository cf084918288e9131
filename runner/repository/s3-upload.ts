import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { OperationError } from '../errors.js';
import { GarbageGovernor } from '../memory.js';
import type { BucketClient } from './s3-client.js';
import { errorCode, isTransientS3Error } from './s3-errors.js';
import type { PartPlan } from './s3-parts.js';
import { PartSpool, type SpooledPart } from './s3-spool.js';

/**
 * Uploads one object from pushed chunks with bounded memory, never visible before `finish()`:
 *
 * - chunks are written into a part file in the temporary directory (s3-spool.ts) and hashed on
 *   the way; a full part is sealed and sent as an UploadPart with its Content-MD5 (the store
 *   refuses a part whose bytes differ: BadDigest); a part that fails on the way (BadDigest, a
 *   5xx, throttling, a broken connection) is sent again from its file (as many attempts as the client makes of any request);
 * - parts upload concurrently up to the plan's limit for their size; `drain()` holds the
 *   producer while that many are pending, so at most limit + 1 part files exist (pending and
 *   the one being filled) and memory holds only stream buffers, whatever the part size;
 * - the multipart upload is created only when the first part is full: an object smaller than one
 *   part is sent by `finish()` as one PutObject (with Content-MD5 and all its metadata);
 * - the upload is completed last, in `finish()`; any failure, `abort()` or the signal aborts it
 *   (AbortMultipartUpload), and in-flight requests are cancelled.
 */

export interface ObjectUploadOptions {
  key: string;
  plan: PartPlan;
  /** User metadata known at the start (stored at CreateMultipartUpload or PutObject). */
  metadata?: Record<string, string>;
  contentType?: string;
  signal?: AbortSignal;
  /** For messages: what is being uploaded ("archive X", "manifest of X"). */
  label: string;
}

export interface FinishedUpload {
  multipart: boolean;
  parts: number;
  bytes: number;
}

const RETRY_DELAY_MS = 500;

export class ObjectUpload {
  bytes = 0;
  private current: SpooledPart | undefined;
  private readonly spool: PartSpool;
  /** Number of the part being filled. */
  private partNumber = 1;
  private uploadId: Promise<string> | undefined;
  private readonly parts: { PartNumber: number; ETag: string }[] = [];
  private readonly tasks = new Set<Promise<void>>();
  private pending = 0;
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private failure: unknown;
  private finished = false;
  private aborted: Promise<void> | undefined;
  private readonly controller = new AbortController();
  /** The stream and HTTP layer's small buffers are garbage as soon as a part is sent: collect them regularly. */
  private readonly governor = new GarbageGovernor();
  private readonly onSignal = () => this.fail(new OperationError(`${this.options.label}: upload stopped by a signal`, 'STOPPED'));

  constructor(
    private readonly client: BucketClient,
    private readonly options: ObjectUploadOptions,
  ) {
    this.spool = new PartSpool(options.label);
    if (options.signal?.aborted) this.onSignal();
    else options.signal?.addEventListener('abort', this.onSignal, { once: true });
  }

  get failed(): unknown {
    return this.failure;
  }

  append(chunk: Uint8Array): void {
    if (this.failure !== undefined || this.finished) return;
    try {
      this.write(chunk);
    } catch (error) {
      this.fail(error);
    }
  }

  private write(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (!this.current) {
        if (this.partNumber > this.options.plan.maxParts) {
          this.fail(
            new OperationError(
              `${this.options.label}: the archive outgrew its upload plan (${this.options.plan.maxParts} parts, up to ${this.options.plan.capacity} bytes; the plan covers twice the source's size at the start, or 500 GiB); raise --s3-max-parts if the store allows more parts`,
              'S3_TOO_LARGE',
            ),
          );
          return;
        }
        this.current = this.spool.create(this.partNumber);
      }
      const size = this.options.plan.size(this.partNumber);
      const n = Math.min(chunk.length - offset, size - this.current.length);
      this.current.write(chunk.subarray(offset, offset + n));
      offset += n;
      this.bytes += n;
      if (this.current.length === size) this.seal();
    }
  }

  /**
   * Resolves once fewer parts wait than the plan allows. After a failure it rejects with it, but
   * only once the upload is aborted and its part files are gone, so a caller that stops there
   * leaves nothing behind in the temporary directory.
   */
  async drain(): Promise<void> {
    try {
      if (this.failure !== undefined) throw this.failure;
      if (this.pending < this.limit()) return;
      await new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    } catch {
      throw await this.settle();
    }
  }

  /**
   * Sends what is left and makes the object visible. `metadata` is added to the object when it
   * is still a single PutObject (a multipart upload's metadata was fixed at its start).
   */
  async finish(metadata: Record<string, string> = {}): Promise<FinishedUpload> {
    if (this.failure !== undefined) throw await this.settle();
    if (this.finished) throw new Error(`${this.options.label}: finish called twice`);
    this.finished = true;
    try {
      if (!this.uploadId) {
        const part = this.current ?? this.spool.create(1);
        this.current = undefined;
        const digest = part.seal();
        await this.sendWithRetries(`upload ${this.options.label}`, true, () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.client.bucket,
              Key: this.options.key,
              Body: part.body(),
              ContentLength: part.length,
              ContentMD5: digest,
              ContentType: this.options.contentType,
              Metadata: { ...this.options.metadata, ...metadata },
              ...this.client.objectHeaders(),
            }),
            `upload ${this.options.label}`,
            { signal: this.controller.signal, raw: true },
          ),
        );
        this.spool.remove();
        return { multipart: false, parts: 1, bytes: this.bytes };
      }
      if (this.current && this.current.length > 0) this.seal();
      while (this.tasks.size > 0) await Promise.all([...this.tasks]);
      if (this.failure !== undefined) throw this.failure;
      const uploadId = await this.uploadId;
      const parts = [...this.parts].sort((a, b) => a.PartNumber - b.PartNumber);
      // Ceph RGW 16 answers with an empty ETag here: the result is not used, HEAD checks the object.
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.client.bucket, Key: this.options.key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
        `complete the upload of ${this.options.label}`,
        { signal: this.controller.signal },
      );
      this.spool.remove();
      return { multipart: true, parts: parts.length, bytes: this.bytes };
    } catch (error) {
      this.fail(error);
      throw await this.settle();
    } finally {
      this.options.signal?.removeEventListener('abort', this.onSignal);
    }
  }

  /** Cancels requests in flight and aborts the multipart upload. Never throws; resolves when done. */
  abort(): Promise<void> {
    this.fail(new OperationError(`${this.options.label}: upload aborted`, 'ABORTED'));
    return this.aborted ?? Promise.resolve();
  }

  private limit(): number {
    return this.options.plan.inFlight(this.options.plan.size(this.partNumber));
  }

  private seal(): void {
    const part = this.current!;
    const partNumber = this.partNumber++;
    this.current = undefined;
    const digest = part.seal();
    this.uploadId ??= this.createUpload();
    this.pending++;
    const task = this.sendPart(partNumber, part, digest)
      .catch((error) => this.fail(error))
      .finally(() => {
        part.discard();
        this.pending--;
        this.tasks.delete(task);
        this.wake();
      });
    this.tasks.add(task);
  }

  private async createUpload(): Promise<string> {
    const created = await this.client.send(
      new CreateMultipartUploadCommand({
        Bucket: this.client.bucket,
        Key: this.options.key,
        ContentType: this.options.contentType,
        Metadata: this.options.metadata,
        ...this.client.objectHeaders(),
      }),
      `start the upload of ${this.options.label}`,
      { signal: this.controller.signal, headersMatter: true },
    );
    if (!created.UploadId) throw new OperationError(`${this.client.location}: the store returned no upload id for ${this.options.label}`, 'S3_FAILED');
    return created.UploadId;
  }

  private async sendPart(partNumber: number, part: SpooledPart, digest: string): Promise<void> {
    const uploadId = await this.uploadId!;
    await this.slot();
    try {
      if (this.failure !== undefined) return;
      const operation = `upload part ${partNumber} of ${this.options.label}`;
      const result = await this.sendWithRetries(operation, false, () =>
        this.client.send(
          new UploadPartCommand({
            Bucket: this.client.bucket,
            Key: this.options.key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: part.body(),
            ContentLength: part.length,
            ContentMD5: digest,
          }),
          operation,
          { signal: this.controller.signal, raw: true },
        ),
      );
      if (!result.ETag) throw new OperationError(`${this.client.location}: the store returned no ETag for part ${partNumber} of ${this.options.label}`, 'S3_FAILED');
      this.parts.push({ PartNumber: partNumber, ETag: result.ETag });
      this.governor.processed(part.length);
    } finally {
      this.release();
    }
  }

  /** Runs `send` (a request with a fresh body stream each time) until it succeeds, is cancelled or fails for good. */
  private async sendWithRetries<T>(operation: string, headersMatter: boolean, send: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await send();
      } catch (error) {
        const cancelled = this.failure !== undefined || this.controller.signal.aborted;
        if (!cancelled && attempt < this.client.maxAttempts && isTransientS3Error(error)) {
          await sleep(RETRY_DELAY_MS * attempt, undefined, { signal: this.controller.signal }).catch(() => undefined);
          if (!this.controller.signal.aborted) continue;
        }
        throw this.client.describe(error, operation, headersMatter);
      }
    }
  }

  private slot(): Promise<void> {
    if (this.running < this.limit()) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.queue.push(() => {
        this.running++;
        resolve();
      }),
    );
  }

  private release(): void {
    this.running--;
    this.queue.shift()?.();
  }

  private wake(): void {
    if (this.failure !== undefined) {
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
      return;
    }
    if (this.pending < this.limit()) for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** Records the first failure, cancels everything in flight and starts aborting the upload. */
  private fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.options.signal?.removeEventListener('abort', this.onSignal);
    this.controller.abort();
    for (const run of this.queue.splice(0)) run();
    this.wake();
    this.current?.discard();
    this.current = undefined;
    this.aborted = this.abortUpload().finally(() => this.spool.remove());
  }

  private async abortUpload(): Promise<void> {
    await Promise.allSettled([...this.tasks]);
    if (!this.uploadId) return;
    const uploadId = await this.uploadId.catch(() => undefined);
    try {
      // A start cancelled in flight may still have created the upload on the store, and its id
      // never reached us: the run holds the lock and the key is its own, so every upload of
      // exactly this key is ours to abort.
      for (const id of uploadId ? [uploadId] : await this.uploadsOfKey()) {
        await this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.client.bucket, Key: this.options.key, UploadId: id }),
          `abort the upload of ${this.options.label}`,
          { raw: true },
        );
      }
    } catch (error) {
      // Already gone is fine; anything else is left for the next run's removeLeftovers().
      if (errorCode(error) !== 'NoSuchUpload') this.abortFailure = error;
    }
  }

  private async uploadsOfKey(): Promise<string[]> {
    const page = await this.client.send(
      new ListMultipartUploadsCommand({ Bucket: this.client.bucket, Prefix: this.options.key }),
      `list the unfinished uploads of ${this.options.label}`,
      { raw: true },
    );
    return (page.Uploads ?? []).filter((u) => u.Key === this.options.key && u.UploadId).map((u) => u.UploadId!);
  }

  /** Set when AbortMultipartUpload itself failed (the next run's leftover clean-up aborts it). */
  abortFailure: unknown;

  /** Waits for the abort to finish and returns the failure to throw. */
  private async settle(): Promise<unknown> {
    await this.aborted;
    return this.failure;
  }
}
