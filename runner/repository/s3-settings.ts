import { UsageError } from '../errors.js';

/**
 * The settings of a bucket repository, validated once (config.ts calls parseS3Settings with
 * the raw flag values and the environment). Credentials are not among them: they come only
 * from the AWS SDK's default chain (environment, web identity / IRSA, shared files).
 */

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing slash; '' for the bucket's root. */
  keyPrefix: string;
}

export type ServerSideEncryption = { mode: 'AES256' } | { mode: 'aws:kms'; kmsKeyId: string | undefined };

export interface S3Settings {
  location: S3Location;
  /** Custom endpoint (MinIO, Ceph RGW, R2…); undefined: AWS's own endpoints. */
  endpoint: string | undefined;
  region: string;
  /** Path-style addressing (`endpoint/bucket/key`) instead of `bucket.endpoint/key`. */
  pathStyle: boolean;
  storageClass: string | undefined;
  sse: ServerSideEncryption | undefined;
  /** The store's part limit for multipart uploads (AWS: 10,000; some stores: 1,000). */
  maxParts: number;
}

/** The raw values of the --remote / --s3-* flags (undefined when not given). */
export interface S3Flags {
  remote: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  storageClass?: string;
  sse?: string;
  sseKmsKeyId?: string;
  maxParts?: string;
}

export const DEFAULT_REGION = 'us-east-1';
export const DEFAULT_MAX_PARTS = 10_000;
/** S3's own limits: no store accepts more parts, and parts below 5 MiB (except the last). */
export const S3_PART_LIMIT = 10_000;

// Bucket naming rules of S3 (3-63 characters; lowercase, digits, dots, hyphens) loosened to
// what S3-compatible stores also accept (uppercase and underscores exist on old Ceph/MinIO buckets).
const BUCKET_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

/** Parses `s3://BUCKET[/KEY-PREFIX]`. */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url.trim());
  if (!match) throw new UsageError(`--remote must look like s3://BUCKET or s3://BUCKET/KEY-PREFIX, got "${url}"`);
  const bucket = match[1]!;
  if (!BUCKET_PATTERN.test(bucket)) throw new UsageError(`--remote: "${bucket}" is not a valid bucket name (3-255 letters, digits, ".", "_" or "-")`);
  const keyPrefix = (match[2] ?? '').replace(/^\/+|\/+$/g, '');
  const segments = keyPrefix === '' ? [] : keyPrefix.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new UsageError(`--remote: key prefix "${keyPrefix}" has an empty, "." or ".." segment; use plain names separated by single slashes`);
  }
  if (/[\0-\x1f\x7f\\]/.test(keyPrefix)) throw new UsageError(`--remote: key prefix "${keyPrefix}" contains a control character or a backslash`);
  return { bucket, keyPrefix };
}

export function formatS3Url(location: S3Location): string {
  return `s3://${location.bucket}${location.keyPrefix ? `/${location.keyPrefix}` : ''}`;
}

/** The object key of a file name in the repository. */
export function objectKey(location: S3Location, name: string): string {
  return location.keyPrefix ? `${location.keyPrefix}/${name}` : name;
}

/** The name of a key directly below the key prefix; undefined for keys elsewhere (deeper or outside). */
export function nameOfKey(location: S3Location, key: string): string | undefined {
  const head = location.keyPrefix ? `${location.keyPrefix}/` : '';
  if (!key.startsWith(head)) return undefined;
  const name = key.slice(head.length);
  return name === '' || name.includes('/') ? undefined : name;
}

/**
 * Validates the flags and fills the defaults from the environment: endpoint from
 * AWS_ENDPOINT_URL, region from AWS_REGION then us-east-1, path style on when an endpoint is
 * given. Throws UsageError (exit 2) in one line.
 */
export function parseS3Settings(flags: S3Flags, env: Record<string, string | undefined>): S3Settings {
  const location = parseS3Url(flags.remote);
  const endpoint = nonEmpty(flags.endpoint) ?? nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  if (endpoint !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(endpoint);
    } catch {
      throw new UsageError(`--s3-endpoint must be a URL like https://s3.example.com, got "${endpoint}"`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`--s3-endpoint must be an http:// or https:// URL, got "${endpoint}"`);
    if (parsed.username || parsed.password) throw new UsageError('--s3-endpoint must not contain credentials; use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY');
  }
  const region = nonEmpty(flags.region) ?? nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION) ?? DEFAULT_REGION;
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/i.test(region)) throw new UsageError(`--s3-region must be a region name like eu-west-1, got "${region}"`);
  const storageClass = nonEmpty(flags.storageClass);
  if (storageClass !== undefined && !/^[A-Z0-9_]{1,64}$/.test(storageClass)) {
    throw new UsageError(`--s3-storage-class must be a storage class name like STANDARD_IA, got "${storageClass}"`);
  }
  const maxParts = flags.maxParts === undefined ? DEFAULT_MAX_PARTS : Number(flags.maxParts.trim());
  if (!Number.isInteger(maxParts) || maxParts < 100 || maxParts > S3_PART_LIMIT) {
    throw new UsageError(`--s3-max-parts must be a whole number from 100 to ${S3_PART_LIMIT}, got "${flags.maxParts}"`);
  }
  return {
    location,
    endpoint,
    region,
    pathStyle: flags.pathStyle ?? endpoint !== undefined,
    storageClass,
    sse: parseSse(nonEmpty(flags.sse), nonEmpty(flags.sseKmsKeyId)),
    maxParts,
  };
}

function parseSse(mode: string | undefined, kmsKeyId: string | undefined): ServerSideEncryption | undefined {
  if (mode === undefined) {
    if (kmsKeyId !== undefined) throw new UsageError('--s3-sse-kms-key-id needs --s3-sse aws:kms');
    return undefined;
  }
  if (mode === 'AES256') {
    if (kmsKeyId !== undefined) throw new UsageError('--s3-sse-kms-key-id applies only to --s3-sse aws:kms, not AES256');
    return { mode };
  }
  if (mode === 'aws:kms') return { mode, kmsKeyId };
  throw new UsageError(`--s3-sse must be AES256 or aws:kms, got "${mode}"`);
}

function nonEmpty(value: string | undefined): string | undefined {
  const v = value?.trim();
  return v === undefined || v === '' ? undefined : v;
}
