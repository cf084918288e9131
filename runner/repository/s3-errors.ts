import { OperationError, RunnerError } from '../errors.js';

/**
 * One line for every way a bucket operation fails: which bucket, which operation, what the
 * store said (its error code and HTTP status, never the SDK's text, which can echo request
 * details) and what to do. Credentials never appear: only the names of the variables.
 */

export interface S3ErrorContext {
  /** `s3://bucket/key-prefix` */
  location: string;
  bucket: string;
  /** What we were doing, as a verb phrase: "list s3://b/p", "upload part 3 of …". */
  operation: string;
  /** The endpoint in use, or undefined for AWS. */
  endpoint: string | undefined;
  region: string;
  /** Flags that added optional headers to the request, e.g. `--s3-storage-class GLACIER`. */
  optionalHeaders: string[];
}

interface SdkError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string> };
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED']);

export function errorCode(error: unknown): string | undefined {
  const e = error as SdkError;
  if (!e || typeof e !== 'object') return undefined;
  return e.Code ?? (e.name && e.name !== 'Error' && e.name !== 'UnknownError' && e.name !== 'Unknown' ? e.name : undefined) ?? e.code;
}

export function httpStatus(error: unknown): number | undefined {
  return (error as SdkError)?.$metadata?.httpStatusCode;
}

const TRANSIENT_CODES = new Set(['BadDigest', 'RequestTimeout', 'SlowDown', 'Throttling', 'ThrottlingException', 'InternalError', 'ServiceUnavailable']);

/**
 * Whether a request is worth sending again: damaged on the way (BadDigest), throttled, a 5xx, or
 * a connection that broke or timed out. The SDK does not retry a request whose body is a stream;
 * s3-upload.ts sends its parts again on these.
 */
export function isTransientS3Error(error: unknown): boolean {
  const code = errorCode(error);
  if (code !== undefined && TRANSIENT_CODES.has(code)) return true;
  const status = httpStatus(error);
  if (status !== undefined) return status >= 500 || status === 429;
  const e = error as SdkError;
  return e?.name === 'TimeoutError' || NETWORK_CODES.has(e?.code ?? '') || NETWORK_CODES.has(code ?? '');
}

export function isNotFound(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'NoSuchKey' || code === 'NotFound' || (httpStatus(error) === 404 && code !== 'NoSuchBucket' && code !== 'NoSuchUpload');
}

export function isAccessDenied(error: unknown): boolean {
  return errorCode(error) === 'AccessDenied' || (httpStatus(error) === 403 && !isCredentialError(error));
}

export function isPreconditionFailed(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'PreconditionFailed' || code === 'ConditionalRequestConflict' || httpStatus(error) === 412 || httpStatus(error) === 409;
}

function isCredentialError(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'InvalidToken' || code === 'ExpiredToken' || code === 'TokenRefreshRequired';
}

function where(ctx: S3ErrorContext): string {
  return ctx.endpoint ? `at ${ctx.endpoint}` : `in AWS region ${ctx.region}`;
}

/** What the store answered, for the message: `AccessDenied, HTTP 403`. */
function answer(error: unknown): string {
  const code = errorCode(error);
  const status = httpStatus(error);
  return [code, status ? `HTTP ${status}` : undefined].filter(Boolean).join(', ') || 'no answer';
}

/** The store's advice on the right region, when AWS sends it. */
function bucketRegion(error: unknown): string | undefined {
  const headers = (error as SdkError)?.$response?.headers ?? {};
  return headers['x-amz-bucket-region'];
}

/** Turns any error of a bucket operation into a one-line RunnerError (exit 1); RunnerErrors pass through. */
export function describeS3Error(error: unknown, ctx: S3ErrorContext): RunnerError {
  if (error instanceof RunnerError) return error;
  const e = error as SdkError;
  const code = errorCode(error);
  const status = httpStatus(error);
  const head = `${ctx.location}: cannot ${ctx.operation}`;
  const fail = (text: string, tag: string) => new OperationError(`${head}: ${text}`, tag, { cause: error });

  if (e?.name === 'AbortError') return new OperationError(`${head}: stopped by a signal`, 'STOPPED', { cause: error });
  if (e?.name === 'CredentialsProviderError' || /could not load credentials/i.test(e?.message ?? '')) {
    return fail(
      'no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (chart: offsite.existingSecret), or use a web identity (IRSA) or a shared credentials file',
      'S3_NO_CREDENTIALS',
    );
  }
  if (code === 'InvalidAccessKeyId') return fail(`the store ${where(ctx)} does not know this access key (${answer(error)}); check AWS_ACCESS_KEY_ID and that the endpoint is the right store`, 'S3_CREDENTIALS');
  if (code === 'SignatureDoesNotMatch') return fail(`the request signature does not match (${answer(error)}); check AWS_SECRET_ACCESS_KEY`, 'S3_CREDENTIALS');
  if (code === 'InvalidToken' || code === 'ExpiredToken' || code === 'TokenRefreshRequired') {
    return fail(`the session token is invalid or expired (${answer(error)}); check AWS_SESSION_TOKEN or the web identity`, 'S3_CREDENTIALS');
  }
  if (code === 'NoSuchBucket') return fail(`bucket ${ctx.bucket} does not exist ${where(ctx)} (${answer(error)}); create it, or fix the bucket in --remote or the endpoint`, 'S3_NO_BUCKET');
  if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || code === 'IllegalLocationConstraintException' || status === 301) {
    const hint = bucketRegion(error);
    return fail(
      `bucket ${ctx.bucket} is not in region ${ctx.region} (${answer(error)}); set --s3-region (or AWS_REGION) to ${hint ? hint : "the bucket's region"}`,
      'S3_REGION',
    );
  }
  if (status === 403 && code === undefined) {
    // HEAD answers carry no error body: a wrong secret and a missing permission look the same.
    return fail(
      'access denied or wrong credentials (HTTP 403 without details); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that the bucket or user policy grants this',
      'S3_ACCESS_DENIED',
    );
  }
  if (code === 'AccessDenied' || status === 403) {
    return fail(`access denied (${answer(error)}); the credentials may not ${ctx.operation.split(' ')[0]} here: grant it in the bucket or user policy, or use other credentials`, 'S3_ACCESS_DENIED');
  }
  if (e?.name === 'TimeoutError' || e?.code === 'ETIMEDOUT' || code === 'RequestTimeout') {
    return fail(
      `the store ${where(ctx)} did not answer in time, also after retries (${e?.code ?? code ?? e?.name}); it may be overloaded or full (Ceph blocks writes when full), or unreachable: check its health, --s3-endpoint and the network`,
      'S3_TIMEOUT',
    );
  }
  const network = NETWORK_CODES.has(e?.code ?? '') || NETWORK_CODES.has(code ?? '');
  if (network) {
    return fail(
      `cannot reach the store ${where(ctx)} (${e?.code ?? code ?? e?.name}); check --s3-endpoint / AWS_ENDPOINT_URL, --s3-region and the network`,
      'S3_UNREACHABLE',
    );
  }
  if (code === 'NoSuchUpload') return fail(`the multipart upload is gone (${answer(error)}); was it aborted by another run or a lifecycle rule?`, 'S3_UPLOAD_GONE');
  if (code === 'BadDigest' || code === 'InvalidDigest' || code === 'XAmzContentSHA256Mismatch') {
    return fail(`the store received different bytes than were sent (${answer(error)}); the data was corrupted in transit, the run may be retried`, 'S3_CORRUPTED_IN_TRANSIT');
  }
  if (code === 'EntityTooLarge' || code === 'EntityTooSmall' || code === 'InvalidPart' || code === 'InvalidPartOrder' || code === 'TooManyParts') {
    return fail(`the store refused the upload's parts (${answer(error)}); if it allows fewer parts than ${'--s3-max-parts'} says, lower --s3-max-parts`, 'S3_PARTS');
  }
  if (code === 'QuotaExceeded' || code === 'InsufficientStorage' || status === 507) return fail(`the bucket is full or over quota (${answer(error)}); free space, raise the quota or lower keep-last`, 'S3_FULL');
  if (status === 400 || status === 501 || code === 'NotImplemented' || code === 'InvalidArgument' || code === 'InvalidStorageClass' || code === 'InvalidRequest') {
    const optional = ctx.optionalHeaders.length
      ? `; it may not support ${ctx.optionalHeaders.join(', ')}: remove or change ${ctx.optionalHeaders.length === 1 ? 'it' : 'them'}`
      : '; the store may not support a request this runner sends (report it with the store name and version)';
    return fail(`the store rejected the request (${answer(error)})${optional}`, 'S3_REJECTED');
  }
  if (status !== undefined && status >= 500) return fail(`the store failed (${answer(error)}) after retries; try again later or check the store's health`, 'S3_SERVER');
  return fail(`${answer(error)}${e?.message && !status ? ` (${oneLine(e.message)})` : ''}`, 'S3_FAILED');
}

function oneLine(text: string): string {
  const line = text.split('\n')[0]!.trim();
  return line.length > 160 ? `${line.slice(0, 157)}...` : line;
}
