import { S3Client, type ServiceInputTypes, type ServiceOutputTypes } from '@aws-sdk/client-s3';
import type { Command } from '@smithy/types';
import { type S3ErrorContext, describeS3Error } from './s3-errors.js';
import { type S3Settings, formatS3Url } from './s3-settings.js';

/**
 * The S3 client of one bucket repository, configured for S3-compatible stores:
 * - credentials only from the SDK's default chain (never given here, never logged);
 * - request and response checksums only "when required": the SDK's default CRC32 checksums
 *   make some stores fail (Ceph RGW 16 answers a streamed PutObject with 411, R2 with 501) or
 *   store the aws-chunked framing inside the object. Integrity comes from Content-MD5 on every
 *   upload instead (checked by the store; the payload itself is sent UNSIGNED-PAYLOAD);
 * - path-style addressing when asked (the default with a custom endpoint);
 * - connection and request timeouts, so a store that stops answering fails the run.
 * Every call goes through `send`, which turns failures into one-line errors naming the bucket.
 */

export interface BucketClientOptions {
  /** Attempts per request, for transient failures (SDK standard retry). Default 3. */
  maxAttempts?: number;
  /** Milliseconds a request may take in total, once connected. */
  requestTimeoutMs?: number;
}

const SILENT_LOGGER = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

export class BucketClient {
  readonly sdk: S3Client;
  readonly bucket: string;
  readonly location: string;
  /** Attempts per request; uploads with a streamed body retry on their own (s3-upload.ts) as often. */
  readonly maxAttempts: number;
  /** Offset of the store's clock (from its Date headers) against ours, in ms. */
  private clockOffsetMs = 0;

  constructor(
    readonly settings: S3Settings,
    options: BucketClientOptions = {},
  ) {
    this.bucket = settings.location.bucket;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.location = formatS3Url(settings.location);
    this.sdk = new S3Client({
      region: settings.region,
      endpoint: settings.endpoint,
      forcePathStyle: settings.pathStyle,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: this.maxAttempts,
      // Errors reach the operator as one line each (s3-errors.ts); without a logger of its own
      // the SDK writes warnings to the console (for example on every failed streamed upload,
      // which s3-upload.ts retries itself).
      logger: SILENT_LOGGER,
      requestHandler: {
        connectionTimeout: 10_000,
        // Until the answer's headers, uploads included: a store that stops answering (Ceph blocks
        // writes when it is full) fails the request instead of hanging the run. By default the SDK
        // only logs a warning when this expires.
        requestTimeout: options.requestTimeoutMs ?? 300_000,
        throwOnRequestTimeout: true,
        // A connection on which nothing moves for this long is given up (a read resumes elsewhere).
        socketTimeout: 120_000,
        httpAgent: { keepAlive: true, maxSockets: 16 },
        httpsAgent: { keepAlive: true, maxSockets: 16 },
      },
    });
    // A body sent with Content-MD5 is checked by the store against that (signed) header, so its
    // SHA-256 need not be signed as well: UNSIGNED-PAYLOAD saves a second hash of every byte, on
    // both sides (Ceph RGW verifies a signed payload's SHA-256 itself).
    this.sdk.middlewareStack.add(
      (next) => async (args) => {
        const headers = (args.request as { headers?: Record<string, string> }).headers;
        if (headers && Object.keys(headers).some((h) => h.toLowerCase() === 'content-md5')) headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'pvcBackupUnsignedPayloadWithMd5', priority: 'low' },
    );
    // The store's Date header: a lock's age is judged on the store's clock, not the pod's.
    this.sdk.middlewareStack.add(
      (next) => async (args) => {
        const result = await next(args);
        const date = (result.response as { headers?: Record<string, string> })?.headers?.date;
        const ms = date ? Date.parse(date) : NaN;
        if (Number.isFinite(ms)) this.clockOffsetMs = ms - Date.now();
        return result;
      },
      { step: 'deserialize', name: 'pvcBackupServerDate', priority: 'low' },
    );
  }

  /** The store's idea of now (second precision, from its last answer). */
  serverNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  /** Flags that add optional headers to uploads, for error messages. */
  optionalHeaders(): string[] {
    const s = this.settings;
    const flags: string[] = [];
    if (s.storageClass) flags.push(`--s3-storage-class ${s.storageClass}`);
    if (s.sse) flags.push(`--s3-sse ${s.sse.mode}${s.sse.mode === 'aws:kms' && s.sse.kmsKeyId ? ' --s3-sse-kms-key-id …' : ''}`);
    return flags;
  }

  /** Storage class and encryption headers for a request that creates an object. */
  objectHeaders(): { StorageClass?: any; ServerSideEncryption?: any; SSEKMSKeyId?: string } {
    const s = this.settings;
    const headers: { StorageClass?: any; ServerSideEncryption?: any; SSEKMSKeyId?: string } = {};
    if (s.storageClass) headers.StorageClass = s.storageClass;
    if (s.sse) {
      headers.ServerSideEncryption = s.sse.mode;
      if (s.sse.mode === 'aws:kms' && s.sse.kmsKeyId) headers.SSEKMSKeyId = s.sse.kmsKeyId;
    }
    return headers;
  }

  errorContext(operation: string, withHeaders = false): S3ErrorContext {
    return {
      location: this.location,
      bucket: this.bucket,
      operation,
      endpoint: this.settings.endpoint,
      region: this.settings.region,
      optionalHeaders: withHeaders ? this.optionalHeaders() : [],
    };
  }

  /** Sends one command; failures become one-line RunnerErrors naming the bucket and `operation`. */
  async send<I extends ServiceInputTypes, O extends ServiceOutputTypes>(
    command: Command<ServiceInputTypes, I, ServiceOutputTypes, O, S3Client['config']>,
    operation: string,
    options: { signal?: AbortSignal; headersMatter?: boolean; raw?: boolean } = {},
  ): Promise<O> {
    try {
      return await this.sdk.send(command, { abortSignal: options.signal });
    } catch (error) {
      if (options.raw) throw error;
      throw describeS3Error(error, this.errorContext(operation, options.headersMatter));
    }
  }

  describe(error: unknown, operation: string, headersMatter = false) {
    return describeS3Error(error, this.errorContext(operation, headersMatter));
  }

  destroy(): void {
    this.sdk.destroy();
  }
}
