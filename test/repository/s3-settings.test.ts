import { describe, expect, test } from 'vitest';
import { UsageError } from '../../runner/errors.js';
import { DEFAULT_CAPACITY_BYTES, MAX_PART_BYTES, planParts } from '../../runner/repository/s3-parts.js';
import { nameOfKey, objectKey, parseS3Settings, parseS3Url } from '../../runner/repository/s3-settings.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('s3:// URLs', () => {
  test('bucket and key prefix; slashes around the prefix are dropped', () => {
    expect(parseS3Url('s3://backups')).toEqual({ bucket: 'backups', keyPrefix: '' });
    expect(parseS3Url('s3://backups/')).toEqual({ bucket: 'backups', keyPrefix: '' });
    expect(parseS3Url('s3://backups/team/app/')).toEqual({ bucket: 'backups', keyPrefix: 'team/app' });
    expect(objectKey({ bucket: 'b', keyPrefix: 'team/app' }, 'x.tar')).toBe('team/app/x.tar');
    expect(objectKey({ bucket: 'b', keyPrefix: '' }, 'x.tar')).toBe('x.tar');
  });

  test('only keys directly below the prefix have names', () => {
    const at = { bucket: 'b', keyPrefix: 'p' };
    expect(nameOfKey(at, 'p/x.tar')).toBe('x.tar');
    expect(nameOfKey(at, 'p/sub/x.tar')).toBeUndefined();
    expect(nameOfKey(at, 'px.tar')).toBeUndefined();
    expect(nameOfKey({ bucket: 'b', keyPrefix: '' }, 'sub/x.tar')).toBeUndefined();
  });

  test.each([
    ['https://bucket/x', /must look like s3:\/\/BUCKET/],
    ['s3://', /must look like/],
    ['s3://a/x', /not a valid bucket name/],
    ['s3://bucket/a//b', /empty, "\." or "\.\." segment/],
    ['s3://bucket/a/../b', /segment/],
  ])('%s is a usage error', (url, message) => {
    expect(() => parseS3Url(url)).toThrow(UsageError);
    expect(() => parseS3Url(url)).toThrow(message);
  });
});

describe('settings', () => {
  test('defaults: AWS endpoints, AWS_REGION then us-east-1, virtual-host style, 10,000 parts', () => {
    expect(parseS3Settings({ remote: 's3://bkt/p' }, {})).toEqual({
      location: { bucket: 'bkt', keyPrefix: 'p' },
      endpoint: undefined,
      region: 'us-east-1',
      pathStyle: false,
      storageClass: undefined,
      sse: undefined,
      maxParts: 10_000,
    });
    expect(parseS3Settings({ remote: 's3://bkt' }, { AWS_REGION: 'eu-central-1' }).region).toBe('eu-central-1');
  });

  test('an endpoint (flag or AWS_ENDPOINT_URL) turns path style on, unless told otherwise; the flag beats the variable', () => {
    const env = { AWS_ENDPOINT_URL: 'http://127.0.0.1:7480' };
    expect(parseS3Settings({ remote: 's3://bkt' }, env)).toMatchObject({ endpoint: 'http://127.0.0.1:7480', pathStyle: true });
    expect(parseS3Settings({ remote: 's3://bkt', pathStyle: false }, env).pathStyle).toBe(false);
    expect(parseS3Settings({ remote: 's3://bkt', endpoint: 'https://s3.example.com' }, env).endpoint).toBe('https://s3.example.com');
  });

  test('encryption, storage class and part limit', () => {
    expect(parseS3Settings({ remote: 's3://bkt', sse: 'aws:kms', sseKmsKeyId: 'key-1', storageClass: 'STANDARD_IA', maxParts: '1000' }, {})).toMatchObject({
      sse: { mode: 'aws:kms', kmsKeyId: 'key-1' },
      storageClass: 'STANDARD_IA',
      maxParts: 1000,
    });
    expect(parseS3Settings({ remote: 's3://bkt', sse: 'AES256' }, {}).sse).toEqual({ mode: 'AES256' });
  });

  test.each([
    [{ endpoint: 'ftp://x' }, /http:\/\/ or https:\/\//],
    [{ endpoint: 'https://key:secret@s3.example.com' }, /must not contain credentials/],
    [{ sse: 'DES' }, /AES256 or aws:kms/],
    [{ sseKmsKeyId: 'k' }, /needs --s3-sse aws:kms/],
    [{ sse: 'AES256', sseKmsKeyId: 'k' }, /only to --s3-sse aws:kms/],
    [{ maxParts: '50' }, /from 100 to 10000/],
    [{ maxParts: '20000' }, /from 100 to 10000/],
    [{ storageClass: 'cold storage' }, /storage class name/],
    [{ region: 'eu west' }, /region name/],
  ])('%o is a usage error', (flags, message) => {
    expect(() => parseS3Settings({ remote: 's3://bucket', ...flags }, {})).toThrow(message);
  });

  test('the endpoint with credentials in it is refused without echoing them', () => {
    try {
      parseS3Settings({ remote: 's3://bucket', endpoint: 'https://AKIA:hunter2@s3.example.com' }, {});
    } catch (error) {
      expect((error as Error).message).not.toMatch(/hunter2|AKIA/);
    }
  });
});

describe('part plan', () => {
  function sizes(maxParts: number, sizeHint?: number) {
    const plan = planParts(maxParts, { sizeHint });
    const all = Array.from({ length: maxParts }, (_, i) => plan.size(i + 1));
    return { plan, all, total: all.reduce((a, b) => a + b, 0) };
  }

  test('a 500 GiB stream of unknown size fits in 10,000 parts; small archives use 8 MiB parts', () => {
    const { plan, all, total } = sizes(10_000);
    expect(total).toBe(plan.capacity);
    expect(plan.capacity).toBeGreaterThanOrEqual(DEFAULT_CAPACITY_BYTES);
    expect(plan.size(1)).toBe(8 * MiB);
    expect(plan.size(1000)).toBe(8 * MiB); // 7.8 GiB in 8 MiB parts
    expect(plan.size(1001)).toBe(26 * MiB);
    expect(Math.max(...all)).toBe(60 * MiB);
    expect(all.every((s, i) => i === 0 || s >= all[i - 1]!)).toBe(true);
  });

  test('a store with 1,000 parts still takes 500 GiB, with larger parts', () => {
    const { plan, all } = sizes(1000);
    expect(plan.capacity).toBeGreaterThanOrEqual(DEFAULT_CAPACITY_BYTES);
    expect(all[0]).toBe(64 * MiB);
    expect(Math.max(...all)).toBe(600 * MiB);
  });

  test('with a size hint the plan covers twice the hint, and small hints keep 8 MiB parts throughout', () => {
    expect(Math.max(...sizes(10_000, 30 * GiB).all)).toBe(8 * MiB);
    const { plan } = sizes(1000, 10 * GiB);
    expect(plan.capacity).toBeGreaterThanOrEqual(20 * GiB);
    expect(plan.size(1000)).toBe(24 * MiB);
    const huge = planParts(10_000, { sizeHint: 2000 * GiB });
    expect(huge.capacity).toBeGreaterThanOrEqual(4000 * GiB);
    expect(huge.size(10_000)).toBeLessThanOrEqual(MAX_PART_BYTES);
  });

  test('parts in flight shrink as parts grow, so their files in the temporary directory stay near 128 MiB', () => {
    const plan = planParts(10_000);
    expect(plan.inFlight(8 * MiB)).toBe(4);
    expect(plan.inFlight(26 * MiB)).toBe(4);
    expect(plan.inFlight(60 * MiB)).toBe(2);
    expect(plan.inFlight(600 * MiB)).toBe(1);
  });
});
