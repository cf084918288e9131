import fs from 'node:fs';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { formatChecksumFile } from '../archive/hash.js';
import { IntegrityError, OperationError, RunnerError } from '../errors.js';
import { AGE_SUFFIX, INFO_SUFFIX, MANIFEST_SUFFIX, SHA256_SUFFIX, compareNewestFirst, infoName, isArchiveOrSidecarName, manifestName, parseArchiveName, sha256Name, sidecarNames, sidecarOwners } from '../store/naming.js';
import type {
  ArchiveEntry,
  ArchiveSidecars,
  ArchiveSink,
  DeleteOutcome,
  Listing,
  LockOptions,
  ObjectInfo,
  PutArchiveOptions,
  ReadHandle,
  Repository,
  RepositoryLock,
  SidecarSource,
  StoredArchive,
} from './repository.js';
import { BucketClient, type BucketClientOptions } from './s3-client.js';
import { isAccessDenied, isNotFound } from './s3-errors.js';
import { acquireBucketLock } from './s3-lock.js';
import { type PartPlan, type PlanOptions, planParts } from './s3-parts.js';
import { openRangedObject } from './s3-read.js';
import { type S3Settings, nameOfKey, objectKey } from './s3-settings.js';
import { ObjectUpload } from './s3-upload.js';

/**
 * An S3-compatible bucket as a Repository. Keys are `KEY-PREFIX/<name>` with the same names as
 * in the backup directory, so `aws s3 cp` + `sha256sum -c` + `tar -x` restore by hand.
 *
 * Publishing an archive: multipart upload (parts with Content-MD5), completed last → the
 * `sha256` metadata (set at the start when the hash is known, else stamped by copying the
 * object onto itself, see `stampSha256`) → HEAD: size and sha256 must match → `.sha256` →
 * manifest. The manifest is written last, and an archive without one is never listed as valid.
 */

export interface BucketRepositoryOptions extends BucketClientOptions {
  /** Keys per ListObjectsV2 / ListMultipartUploads page (S3's maximum, 1000, by default). */
  listPageSize?: number;
  /** Bytes per ranged GET when reading (default 64 MiB), and bytes buffered ahead of the reader (default 4 MiB). */
  segmentBytes?: number;
  readAheadBytes?: number;
  /** For tests: part-plan overrides (a small capacity, small parts). */
  plan?: Omit<PlanOptions, 'sizeHint'>;
  /** Objects larger than this are stamped with a multipart copy (S3's CopyObject limit is 5 GiB). */
  copyLimitBytes?: number;
}

const COPY_LIMIT_BYTES = 5 * 1024 * 1024 * 1024;

export class BucketRepository implements Repository {
  readonly kind = 'bucket';
  readonly client: BucketClient;
  readonly location: string;

  constructor(
    readonly settings: S3Settings,
    private readonly options: BucketRepositoryOptions = {},
  ) {
    this.client = new BucketClient(settings, options);
    this.location = this.client.location;
  }

  key(name: string): string {
    return objectKey(this.settings.location, name);
  }

  plan(sizeHint?: number): PartPlan {
    return planParts(this.settings.maxParts, { sizeHint, ...this.options.plan });
  }

  /** Lists keys directly below the key prefix that start with `start`, with ListObjectsV2 pages. */
  private async listNames(start: string, operation: string): Promise<Map<string, { size: number; modified: Date }>> {
    const found = new Map<string, { size: number; modified: Date }>();
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.client.bucket,
          Prefix: this.key(start),
          Delimiter: '/',
          MaxKeys: this.options.listPageSize ?? 1000,
          ContinuationToken: token,
        }),
        operation,
      );
      for (const object of page.Contents ?? []) {
        const name = object.Key === undefined ? undefined : nameOfKey(this.settings.location, object.Key);
        if (name !== undefined) found.set(name, { size: object.Size ?? 0, modified: object.LastModified ?? new Date(0) });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && !token) throw new OperationError(`${this.location}: the store's listing is truncated but gives no continuation token`, 'S3_LIST');
    } while (token);
    return found;
  }

  async list(prefix: string): Promise<Listing> {
    const names = await this.listNames(`${prefix}-`, `list ${this.location}`);
    const archives: ArchiveEntry[] = [];
    const incomplete: ArchiveEntry[] = [];
    const orphans: string[] = [];
    for (const [name, object] of names) {
      const parsed = parseArchiveName(name);
      if (parsed && parsed.prefix === prefix) {
        const entry: ArchiveEntry = { ...parsed, size: object.size, modified: object.modified, hasSha256: names.has(sha256Name(name)), hasManifest: names.has(manifestName(name)), hasInfo: parsed.encrypted && names.has(infoName(name)) };
        (entry.hasManifest ? archives : incomplete).push(entry);
        continue;
      }
      const owners = sidecarOwners(name);
      if (owners && owners[0]!.prefix === prefix && !owners.some((owner) => names.has(owner.name))) orphans.push(name);
    }
    return { archives: archives.sort(compareNewestFirst), incomplete: incomplete.sort(compareNewestFirst), orphans: orphans.sort() };
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    const head = await this.head(name);
    return head && { size: head.size, modified: head.modified, metadata: head.metadata };
  }

  private async head(name: string): Promise<(ObjectInfo & { etag: string | undefined }) | undefined> {
    try {
      const answer = await this.client.send(new HeadObjectCommand({ Bucket: this.client.bucket, Key: this.key(name) }), `read ${this.location}/${name}`, { raw: true });
      return { size: answer.ContentLength ?? 0, modified: answer.LastModified ?? new Date(0), metadata: answer.Metadata ?? {}, etag: answer.ETag };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.client.describe(error, `read ${this.location}/${name}`);
    }
  }

  async read(name: string, options: { signal?: AbortSignal } = {}): Promise<ReadHandle> {
    const head = await this.head(name);
    if (!head) throw new OperationError(`no ${name} in ${this.location}`, 'NOT_FOUND');
    const stream = openRangedObject(this.client, this.key(name), head.size, head.etag, {
      label: name,
      signal: options.signal,
      segmentBytes: this.options.segmentBytes,
      highWaterMark: this.options.readAheadBytes,
    });
    return { stream, size: head.size };
  }

  async readSmall(name: string): Promise<Buffer | undefined> {
    try {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.client.bucket, Key: this.key(name) }), `read ${this.location}/${name}`, { raw: true });
      return Buffer.from(await answer.Body!.transformToByteArray());
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.client.describe(error, `read ${this.location}/${name}`);
    }
  }

  async createArchive(name: string, options: PutArchiveOptions = {}): Promise<ArchiveSink> {
    if (await this.head(name)) throw new OperationError(`${name} already exists in ${this.location}; archives are never overwritten`, 'EXISTS');
    return new BucketArchiveSink(this, name, options);
  }

  async putSidecar(name: string, source: SidecarSource, options: { signal?: AbortSignal } = {}): Promise<void> {
    const label = `${this.location}/${name}`;
    const signal = options.signal;
    if (typeof source === 'string' || source instanceof Uint8Array) {
      const upload = new ObjectUpload(this.client, { key: this.key(name), plan: this.plan(0), label, contentType: contentTypeOf(name), signal });
      upload.append(typeof source === 'string' ? Buffer.from(source, 'utf8') : source);
      await upload.finish();
      return;
    }
    const size = 'file' in source ? fs.statSync(source.file).size : undefined;
    const stream: Readable = 'file' in source ? fs.createReadStream(source.file, { highWaterMark: 1024 * 1024 }) : source.stream;
    const upload = new ObjectUpload(this.client, { key: this.key(name), plan: this.plan(size), label, contentType: contentTypeOf(name), signal });
    try {
      for await (const chunk of stream) {
        upload.append(chunk as Buffer);
        await upload.drain();
      }
      await upload.finish();
    } catch (error) {
      await upload.abort();
      stream.destroy();
      throw error;
    }
  }

  async deleteArchive(name: string): Promise<DeleteOutcome> {
    const removed: string[] = [];
    for (const file of [name, ...sidecarNames(name)]) {
      try {
        await this.deleteObject(file);
        removed.push(file);
      } catch (error) {
        if (error instanceof RetainedError) return { status: 'retained', removed, reason: error.message };
        throw error;
      }
    }
    return { status: 'deleted', removed };
  }

  async deleteFiles(names: readonly string[]) {
    const removed: string[] = [];
    const failed: { name: string; error: unknown }[] = [];
    for (const name of names) {
      try {
        await this.deleteObject(name);
        removed.push(name);
      } catch (error) {
        failed.push({ name, error });
      }
    }
    return { removed, failed };
  }

  /** DeleteObject, one key at a time (DeleteObjects needs Content-MD5 or CRC32 that some stores refuse). */
  private async deleteObject(name: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.client.bucket, Key: this.key(name) }), `delete ${this.location}/${name}`, { raw: true });
    } catch (error) {
      if (isNotFound(error)) return;
      if (isAccessDenied(error)) {
        throw new RetainedError(
          `${this.location}/${name} is retained: the store denied its deletion (Object Lock / WORM bucket, or credentials without s3:DeleteObject)`,
        );
      }
      throw this.client.describe(error, `delete ${this.location}/${name}`);
    }
  }

  /**
   * Aborts the multipart uploads left by interrupted runs: those whose key is directly below the
   * key prefix and is an archive or sidecar name of ours. Uploads of other tools are not touched.
   */
  async removeLeftovers(): Promise<string[]> {
    const aborted: string[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    const prefix = this.settings.location.keyPrefix ? `${this.settings.location.keyPrefix}/` : '';
    for (;;) {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.client.bucket,
          Prefix: prefix,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
          MaxUploads: this.options.listPageSize ?? 1000,
        }),
        `list the unfinished uploads in ${this.location}`,
      );
      for (const upload of page.Uploads ?? []) {
        const name = upload.Key === undefined ? undefined : nameOfKey(this.settings.location, upload.Key);
        if (name === undefined || !isOurs(name) || !upload.UploadId) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.client.bucket, Key: upload.Key, UploadId: upload.UploadId }), `abort the unfinished upload of ${name}`, {
            raw: true,
          });
        } catch (error) {
          if (!isNotFound(error) && (error as { name?: string }).name !== 'NoSuchUpload') throw this.client.describe(error, `abort the unfinished upload of ${name}`);
        }
        aborted.push(name);
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
      if (!keyMarker) throw new OperationError(`${this.location}: the store's upload listing is truncated but gives no marker`, 'S3_LIST');
    }
    return aborted.sort();
  }

  lock(options: LockOptions): Promise<RepositoryLock> {
    return acquireBucketLock(this.client, this.settings.location, options);
  }

  /**
   * Stores `sha256` as the object's metadata after a multipart upload whose hash was known only
   * at its end. S3 fixes a multipart object's metadata when the upload starts, so the object is
   * copied onto itself with the new metadata (MetadataDirective REPLACE, the storage class and
   * encryption repeated, conditional on the ETag just uploaded). Ceph RGW does a copy onto
   * itself as a metadata-only update; AWS copies server-side, and above 5 GiB (CopyObject's
   * limit) with a multipart copy (UploadPartCopy in parts of at most 5 GiB).
   */
  async stampSha256(name: string, sha256: string, head: { size: number; etag: string | undefined; metadata: Record<string, string> }, signal?: AbortSignal): Promise<void> {
    const key = this.key(name);
    const source = `${this.client.bucket}/${encodeURIComponent(key).replace(/%2F/g, '/')}`;
    const metadata = { ...head.metadata, sha256 };
    const operation = `store the sha256 metadata of ${this.location}/${name}`;
    if (head.size <= (this.options.copyLimitBytes ?? COPY_LIMIT_BYTES)) {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.client.bucket,
          Key: key,
          CopySource: source,
          CopySourceIfMatch: head.etag,
          MetadataDirective: 'REPLACE',
          Metadata: metadata,
          ContentType: contentTypeOf(name),
          ...this.client.objectHeaders(),
        }),
        operation,
        { signal, headersMatter: true },
      );
      return;
    }
    const created = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.client.bucket, Key: key, Metadata: metadata, ContentType: contentTypeOf(name), ...this.client.objectHeaders() }),
      operation,
      { signal, headersMatter: true },
    );
    const uploadId = created.UploadId!;
    try {
      const limit = this.options.copyLimitBytes ?? COPY_LIMIT_BYTES;
      const count = Math.ceil(head.size / limit);
      const partBytes = Math.ceil(head.size / count);
      const parts: { PartNumber: number; ETag: string }[] = [];
      for (let i = 0; i < count; i++) {
        const start = i * partBytes;
        const end = Math.min(head.size, start + partBytes) - 1;
        const copied = await this.client.send(
          new UploadPartCopyCommand({
            Bucket: this.client.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: i + 1,
            CopySource: source,
            CopySourceIfMatch: head.etag,
            CopySourceRange: `bytes=${start}-${end}`,
          }),
          operation,
          { signal },
        );
        parts.push({ PartNumber: i + 1, ETag: copied.CopyPartResult!.ETag! });
      }
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.client.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
        operation,
        { signal },
      );
    } catch (error) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.client.bucket, Key: key, UploadId: uploadId }), `abort the copy of ${name}`, { raw: true })
        .catch(() => undefined);
      throw error;
    }
  }

  /** For the archive sink: HEAD with the ETag. */
  headObject(name: string) {
    return this.head(name);
  }

  /** For the archive sink: removes an object best-effort (returns whether it is gone). */
  async removeQuietly(name: string): Promise<boolean> {
    try {
      await this.deleteObject(name);
      return true;
    } catch {
      return false;
    }
  }

  destroy(): void {
    this.client.destroy();
  }
}

class RetainedError extends Error {}

function isOurs(name: string): boolean {
  return isArchiveOrSidecarName(name);
}

function contentTypeOf(name: string): string {
  if (name.endsWith(AGE_SUFFIX)) return 'application/octet-stream';
  if (name.endsWith(MANIFEST_SUFFIX) || name.endsWith(INFO_SUFFIX)) return 'application/json';
  if (name.endsWith(SHA256_SUFFIX)) return 'text/plain; charset=utf-8';
  if (name.endsWith('.tar.gz')) return 'application/gzip';
  if (name.endsWith('.tar.zst')) return 'application/zstd';
  return 'application/x-tar';
}

/**
 * The archive's upload, then its checks and sidecars (see BucketRepository). Anything that
 * fails after the object became visible removes it again, so no run leaves a half-published
 * archive behind (if even that removal fails, the object has no manifest and is never valid).
 */
class BucketArchiveSink implements ArchiveSink {
  private readonly upload: ObjectUpload;
  private state: 'writing' | 'committing' | 'done' | 'aborted' = 'writing';
  private visible = false;

  constructor(
    private readonly repo: BucketRepository,
    readonly name: string,
    private readonly options: PutArchiveOptions,
  ) {
    this.upload = new ObjectUpload(repo.client, {
      key: repo.key(name),
      plan: repo.plan(options.sizeHint),
      metadata: options.sha256 ? { sha256: options.sha256 } : {},
      contentType: contentTypeOf(name),
      signal: options.signal,
      label: `${repo.location}/${name}`,
    });
  }

  get bytes(): number {
    return this.upload.bytes;
  }

  append(chunk: Uint8Array): void {
    this.upload.append(chunk);
  }

  drain(): Promise<void> {
    return this.upload.drain();
  }

  async commit(sidecars: ArchiveSidecars): Promise<StoredArchive> {
    if (this.state !== 'writing') throw new Error(`${this.name}: commit after the sink was ${this.state}`);
    this.state = 'committing';
    const { repo, name } = this;
    try {
      if (this.options.sha256 && this.options.sha256 !== sidecars.sha256) {
        throw new IntegrityError(`${name}: the archive's SHA-256 changed during the upload (${this.options.sha256} announced, ${sidecars.sha256} at the end)`, 'CHECKSUM');
      }
      const finished = await this.upload.finish({ sha256: sidecars.sha256 });
      this.visible = true;
      let head = await repo.headObject(name);
      if (!head) throw new OperationError(`${repo.location}/${name} is missing right after its upload completed`, 'S3_UPLOAD_CHECK');
      if (head.metadata.sha256 !== sidecars.sha256 && finished.multipart) {
        await repo.stampSha256(name, sidecars.sha256, head, this.options.signal);
        head = await repo.headObject(name);
      }
      this.check(head, sidecars.sha256, finished.bytes);
      const signal = this.options.signal;
      this.stopIfAborted();
      await repo.putSidecar(sha256Name(name), formatChecksumFile(sidecars.sha256, name), { signal });
      this.stopIfAborted();
      if (sidecars.info !== undefined) await repo.putSidecar(infoName(name), sidecars.info, { signal });
      this.stopIfAborted();
      await repo.putSidecar(manifestName(name), sidecars.manifest, { signal });
      this.state = 'done';
      return { name, size: finished.bytes, sha256: sidecars.sha256, location: `s3://${repo.client.bucket}/${repo.key(name)}` };
    } catch (error) {
      await this.discard();
      throw error instanceof RunnerError ? error : repo.client.describe(error, `publish ${repo.location}/${name}`);
    }
  }

  /** abort() (or the signal) during a commit: stop before the next step writes anything. */
  private stopIfAborted(): void {
    if (this.state === 'aborted' || this.options.signal?.aborted) throw new OperationError(`${this.repo.location}/${this.name}: upload stopped`, 'STOPPED');
  }

  private check(head: { size: number; metadata: Record<string, string> } | undefined, sha256: string, bytes: number): void {
    const where = `${this.repo.location}/${this.name}`;
    if (!head) throw new OperationError(`${where} disappeared while it was being published`, 'S3_UPLOAD_CHECK');
    if (head.size !== bytes) {
      throw new IntegrityError(`${where}: the store holds ${head.size} bytes, ${bytes} were uploaded; the upload is discarded`, 'S3_UPLOAD_CHECK');
    }
    if (head.metadata.sha256 !== sha256) {
      throw new IntegrityError(
        `${where}: the stored sha256 metadata is ${head.metadata.sha256 === undefined ? 'missing' : `"${head.metadata.sha256}"`}, expected ${sha256}; the store does not keep user metadata? The upload is discarded`,
        'S3_UPLOAD_CHECK',
      );
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    await this.discard();
  }

  abortSync(): void {
    // Nothing reaches the store synchronously; the upload is aborted by abort() or the next run.
  }

  private async discard(): Promise<void> {
    this.state = 'aborted';
    await this.upload.abort();
    if (this.visible) {
      // Sidecars first would leave a moment with a manifest but a missing archive; the archive
      // goes first, then whatever sidecar got written.
      for (const file of [this.name, ...sidecarNames(this.name)]) await this.repo.removeQuietly(file);
    }
  }
}
