import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { HeadObjectCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, test } from 'vitest';
import { LockHeldError, OperationError, RunnerError } from '../../runner/errors.js';
import { memoryLogger } from '../../runner/log.js';
import { manifestName, sha256Name } from '../../runner/store/naming.js';
import { useMounts } from '../helpers/mounts.js';
import { type Rgw, useRgw, withEnv } from '../helpers/rgw.js';
import { useTempDirs } from '../helpers/tree.js';
import { bucketRepository, bucketSubject, feed, listKeys, publish, readAll, sha256 } from './support.js';

/**
 * What only the bucket does: metadata and HEAD checks, paging, denied deletes, the part plan's
 * limit, stopping on a signal, its lock, and one clear line for each way the store says no.
 */

const rgw = useRgw({ storageClasses: ['STANDARD_IA'] });
const tmp = useTempDirs();
const mount = useMounts();
const MiB = 1024 * 1024;

async function head(r: Rgw, bucket: string, key: string) {
  return r.client().send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}

describe('publishing', () => {
  test('the archive object carries sha256 metadata: stamped after a multipart upload, or set at once', async () => {
    const r = rgw();
    const s = await bucketSubject(r, 'p');
    const big = randomBytes(17 * MiB + 3);
    const name = 'backup-20240101T000000Z.tar.gz';
    await publish(s.repo, name, big);
    const stamped = await head(r, s.bucket, `p/${name}`);
    expect(stamped.Metadata).toEqual({ sha256: sha256(big) });
    expect(stamped.ContentLength).toBe(big.length);
    expect(stamped.ETag).toMatch(/-3"$/); // three parts, each sent with its Content-MD5

    // Uploading a file whose hash is known: metadata from the start, no copy.
    const known = 'backup-20240102T000000Z.tar.gz';
    const sink = await s.repo.createArchive(known, { sha256: sha256(big), sizeHint: big.length });
    await feed(sink, big);
    await sink.commit({ sha256: sha256(big), manifest: '{}' });
    expect((await head(r, s.bucket, `p/${known}`)).Metadata).toEqual({ sha256: sha256(big) });

    // Smaller than one part: a single PutObject with everything.
    const small = randomBytes(1000);
    await publish(s.repo, 'backup-20240103T000000Z.tar.gz', small);
    const single = await head(r, s.bucket, 'p/backup-20240103T000000Z.tar.gz');
    expect(single.Metadata).toEqual({ sha256: sha256(small) });
    expect(single.ETag).toBe(`"${createHash('md5').update(small).digest('hex')}"`);
  });

  test('storage class and SSE headers reach the store, and stamping the metadata keeps the class', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const repo = bucketRepository(r, `s3://${bucket}/p`, {}, { storageClass: 'STANDARD_IA', sse: 'AES256' });
    const data = randomBytes(10 * MiB);
    await publish(repo, 'backup-20240101T000000Z.tar', data);
    const object = await head(r, bucket, 'p/backup-20240101T000000Z.tar');
    expect(object.StorageClass).toBe('STANDARD_IA');
    expect(object.Metadata).toEqual({ sha256: sha256(data) });
    expect((await head(r, bucket, 'p/backup-20240101T000000Z.tar.manifest.json')).StorageClass).toBe('STANDARD_IA');
  });

  test('above the copy limit the metadata is stamped with a multipart copy', async () => {
    const r = rgw();
    const s = await bucketSubject(r, 'p', { copyLimitBytes: 6 * MiB });
    const data = randomBytes(17 * MiB);
    await publish(s.repo, 'backup-20240101T000000Z.tar', data);
    expect((await head(r, s.bucket, 'p/backup-20240101T000000Z.tar')).Metadata).toEqual({ sha256: sha256(data) });
    expect(sha256(await readAll(s.repo, 'backup-20240101T000000Z.tar'))).toBe(sha256(data));
    expect(await s.unfinished()).toEqual([]);
  });

  test('a hash announced at the start that differs at the end discards the upload', async () => {
    const s = await bucketSubject(rgw(), 'p');
    const data = randomBytes(9 * MiB);
    const sink = await s.repo.createArchive('backup-20240101T000000Z.tar', { sha256: '0'.repeat(64) });
    await feed(sink, data);
    await expect(sink.commit({ sha256: sha256(data), manifest: '{}' })).rejects.toMatchObject({ code: 'CHECKSUM', exitCode: 3 });
    expect(await s.stored()).toEqual([]);
    expect(await s.unfinished()).toEqual([]);
  });

  test('an archive that outgrows its part plan fails clearly, and nothing is left', async () => {
    const s = await bucketSubject(rgw(), 'p', { plan: { capacity: 0, minPartBytes: 5 * MiB } });
    const repo = bucketRepository(rgw(), `s3://${s.bucket}/p`, { plan: { capacity: 0, minPartBytes: 5 * MiB } }, { maxParts: '100' });
    expect(repo.plan().capacity).toBe(500 * MiB);
    const sink = await repo.createArchive('backup-20240101T000000Z.tar');
    const chunk = randomBytes(MiB);
    let failure: unknown;
    for (let i = 0; i < 501 && !failure; i++) {
      sink.append(chunk);
      failure = await sink.drain().then(() => undefined, (e: unknown) => e);
    }
    expect(failure).toBeInstanceOf(OperationError);
    expect((failure as Error).message).toMatch(/outgrew its upload plan \(100 parts.*raise --s3-max-parts/);
    await expect(sink.commit({ sha256: '0'.repeat(64), manifest: '{}' })).rejects.toBe(failure);
    expect(await s.stored()).toEqual([]);
    expect(await s.unfinished()).toEqual([]);
  });

  test.skipIf(process.getuid?.() !== 0)('a temporary directory without room for the parts fails the upload clearly, and nothing is left', async () => {
    const s = await bucketSubject(rgw(), 'p');
    const small = await tmp('small-tmp');
    mount('tmpfs', small, 'size=12m,mode=0700');
    const failure = await withEnv({ TMPDIR: small }, () => publish(s.repo, 'backup-20240101T000000Z.tar', randomBytes(30 * MiB))).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(OperationError);
    expect((failure as Error).message).toMatch(/: cannot keep upload part \d+ in the temporary directory .*: no space left on device; free space there or point TMPDIR at a directory with room/);
    expect((failure as Error).message).not.toContain('\n');
    // Gone by the time the failure is reported, not some time later.
    expect(fs.readdirSync(small)).toEqual([]);
    expect(await s.stored()).toEqual([]);
    expect(await s.unfinished()).toEqual([]);
  });

  test('an AbortSignal (SIGTERM) stops the upload: requests cancelled, upload aborted, nothing visible', async () => {
    const s = await bucketSubject(rgw(), 'p');
    const stop = new AbortController();
    const sink = await s.repo.createArchive('backup-20240101T000000Z.tar', { signal: stop.signal });
    await feed(sink, randomBytes(30 * MiB));
    // Parts are still in flight: wait until the store lists the upload, then stop.
    await expect.poll(() => s.unfinished(), { timeout: 20_000 }).toHaveLength(1);
    stop.abort();
    await expect(sink.drain()).rejects.toMatchObject({ code: 'STOPPED' });
    await sink.abort();
    expect(await s.unfinished()).toEqual([]);
    expect(await s.stored()).toEqual([]);
  });
});

describe('listing and deleting', () => {
  test('listings are paged (ListObjectsV2 continuation tokens)', async () => {
    const s = await bucketSubject(rgw(), 'p', { listPageSize: 2 });
    const names = Array.from({ length: 7 }, (_, i) => `backup-2024010${i + 1}T000000Z.tar`);
    for (const n of names) await publish(s.repo, n, randomBytes(10));
    const listing = await s.repo.list('backup');
    expect(listing.archives.map((a) => a.name)).toEqual([...names].reverse());
    expect(listing.archives.every((a) => a.hasManifest && a.hasSha256)).toBe(true);
  });

  test('leftover uploads are found across pages of the upload listing', async () => {
    const s = await bucketSubject(rgw(), 'p', { listPageSize: 2 });
    const names = ['backup-20240101T000000Z.tar', 'backup-20240102T000000Z.tar', 'backup-20240103T000000Z.tar', 'other-20240101T000000Z.tar.gz.manifest.json', 'backup-20240104T000000Z.tar'];
    for (const n of names) await s.leaveInterrupted(n);
    await s.leaveInterrupted('backup-20240103T000000Z.tar'); // a second upload of the same key
    expect(await s.repo.removeLeftovers()).toEqual([...names, 'backup-20240103T000000Z.tar'].sort());
    expect(await s.unfinished()).toEqual([]);
  });

  test('a delete the store denies (Object Lock, delete-less credentials) is "retained", not a failure', async () => {
    const r = rgw();
    const s = await bucketSubject(r, 'p');
    await publish(s.repo, 'backup-20240101T000000Z.tar.gz');
    await r.policy(s.bucket, [{ Effect: 'Deny', Principal: { AWS: ['arn:aws:iam:::user/backup'] }, Action: ['s3:DeleteObject'], Resource: [`arn:aws:s3:::${s.bucket}/*`] }]);
    const outcome = await s.repo.deleteArchive('backup-20240101T000000Z.tar.gz');
    expect(outcome).toEqual({ status: 'retained', removed: [], reason: expect.stringMatching(/is retained: the store denied its deletion/) });
    expect((await s.repo.list('backup')).archives).toHaveLength(1);
  });
});

describe('reading', () => {
  test('reads in ranges, streaming; an object replaced mid-read fails the read', async () => {
    const r = rgw();
    const s = await bucketSubject(r, 'p', { segmentBytes: MiB, readAheadBytes: 256 * 1024 });
    const data = randomBytes(6 * MiB + 5);
    await publish(s.repo, 'backup-20240101T000000Z.tar', data);
    expect((await readAll(s.repo, 'backup-20240101T000000Z.tar')).equals(data)).toBe(true);

    const { stream, size } = await s.repo.read('backup-20240101T000000Z.tar');
    expect(size).toBe(data.length);
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    await r.client().send(new PutObjectCommand({ Bucket: s.bucket, Key: 'p/backup-20240101T000000Z.tar', Body: randomBytes(data.length) }));
    const rest = (async () => {
      for (;;) if ((await iterator.next()).done) return;
    })();
    await expect(rest).rejects.toThrow(/was replaced while it was being read/);
  });
});

/**
 * A TCP relay in front of RGW that cuts chosen connections after some bytes (a real broken
 * connection mid-transfer) or flips one byte in them (data damaged on the way), for the retry
 * and integrity paths.
 */
async function cuttingRelay(target: string, cut: { direction: 'down' | 'up'; afterBytes: number; connections: number[]; flip?: boolean; once?: boolean }) {
  const { hostname, port } = new URL(target);
  let count = 0;
  let flips = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const n = ++count;
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client).add(upstream);
    let moved = 0;
    const [from, to] = cut.direction === 'down' ? [upstream, client] : [client, upstream];
    const [back, forth] = cut.direction === 'down' ? [client, upstream] : [upstream, client];
    from.on('data', (chunk: Buffer) => {
      moved += chunk.length;
      if (cut.connections.includes(n) && moved > cut.afterBytes) {
        if (cut.flip) {
          // Damage one byte of this connection, once, and let everything else through.
          const at = chunk.length - (moved - cut.afterBytes);
          chunk[at] = chunk[at]! ^ 0x01;
          flips++;
          cut.connections = cut.once ? [] : cut.connections.filter((c) => c !== n);
        } else {
          client.resetAndDestroy();
          upstream.destroy();
          return;
        }
      }
      to.write(chunk);
    });
    back.on('data', (chunk: Buffer) => forth.write(chunk));
    for (const s of [client, upstream]) s.on('error', () => (client.destroy(), upstream.destroy()));
    for (const s of [client, upstream]) s.on('close', () => (client.destroy(), upstream.destroy()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => count,
    flips: () => flips,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('broken connections', () => {
  test('a read whose connection breaks mid-range resumes from the first byte not yet delivered', async () => {
    const r = rgw();
    const s = await bucketSubject(r, 'p');
    const data = randomBytes(12 * MiB);
    await publish(s.repo, 'backup-20240101T000000Z.tar', data);
    // Connection 1 carries the HEAD and then (kept alive) the first range, and breaks after 3 MiB.
    const relay = await cuttingRelay(r.endpoint, { direction: 'down', afterBytes: 3 * MiB, connections: [1] });
    try {
      const repo = bucketRepository(r, `s3://${s.bucket}/p`, { segmentBytes: 8 * MiB }, { endpoint: relay.endpoint });
      expect(sha256(await readAll(repo, 'backup-20240101T000000Z.tar'))).toBe(sha256(data));
      expect(relay.connections()).toBeGreaterThanOrEqual(2);
    } finally {
      relay.close();
    }
  });

  test('an upload whose connection breaks mid-part sends the part again; the archive is intact', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const relay = await cuttingRelay(r.endpoint, { direction: 'up', afterBytes: 2 * MiB, connections: [1, 2] });
    try {
      const repo = bucketRepository(r, `s3://${bucket}/p`, {}, { endpoint: relay.endpoint });
      const data = randomBytes(20 * MiB);
      await publish(repo, 'backup-20240101T000000Z.tar', data);
      expect(sha256(await readAll(bucketRepository(r, `s3://${bucket}/p`), 'backup-20240101T000000Z.tar'))).toBe(sha256(data));
      expect(relay.connections()).toBeGreaterThanOrEqual(3);
    } finally {
      relay.close();
    }
  });
});

describe('integrity on the way', () => {
  test('a part damaged in transit is refused by the store (Content-MD5: BadDigest) and sent again', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    // 5 MiB into a connection: inside the body of the first part it carries; one flip in all.
    const relay = await cuttingRelay(r.endpoint, { direction: 'up', afterBytes: 5 * MiB, connections: [1, 2, 3, 4, 5, 6], flip: true, once: true });
    try {
      const repo = bucketRepository(r, `s3://${bucket}/p`, {}, { endpoint: relay.endpoint });
      const data = randomBytes(20 * MiB);
      const sink = await repo.createArchive('backup-20240101T000000Z.tar');
      await feed(sink, data);
      await sink.commit({ sha256: sha256(data), manifest: '{}' });
      expect(relay.flips()).toBe(1);
      expect(sha256(await readAll(bucketRepository(r, `s3://${bucket}/p`), 'backup-20240101T000000Z.tar'))).toBe(sha256(data));
    } finally {
      relay.close();
    }
  });

  test('a part damaged every time fails the upload with a clear line, and nothing is left', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const relay = await cuttingRelay(r.endpoint, { direction: 'up', afterBytes: 3 * MiB, connections: Array.from({ length: 50 }, (_, i) => i + 1), flip: true });
    try {
      const repo = bucketRepository(r, `s3://${bucket}/p`, {}, { endpoint: relay.endpoint });
      const failure = await publish(repo, 'backup-20240101T000000Z.tar', randomBytes(20 * MiB)).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(OperationError);
      expect((failure as Error).message).toMatch(/cannot upload part \d+ of .*: the store received different bytes than were sent \(BadDigest, HTTP 400\)/);
    } finally {
      relay.close();
    }
    expect(await listKeys(r.client(), bucket)).toEqual([]);
    expect((await r.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).toEqual([]);
  });
});

describe('lock', () => {
  test('a heartbeat keeps the lock fresh; a stale one is broken with a warning; a replaced one is reported lost', async () => {
    const r = rgw();
    const s = await bucketSubject(r, 'p');
    const log = memoryLogger();
    const held = await s.repo.lock({ command: 'backup', staleSeconds: 3, onWarning: (m, f) => log.warn('lock.warning', m, f) });
    await new Promise((done) => setTimeout(done, 4500));
    await expect(s.repo.lock({ command: 'prune', staleSeconds: 3 })).rejects.toBeInstanceOf(LockHeldError);

    // A lock of another host that stopped beating 3+ seconds ago is stale.
    await held.release();
    const body = JSON.stringify({ host: 'gone-pod', pid: 1, command: 'backup', startedAt: '2024-01-01T00:00:00Z', token: 'x' });
    await r.client().send(new PutObjectCommand({ Bucket: s.bucket, Key: 'p/.pvc-backup.lock', Body: body }));
    await expect(s.repo.lock({ command: 'prune', staleSeconds: 3 })).rejects.toThrow(/locked by backup on gone-pod \(pid 1\)/);
    await new Promise((done) => setTimeout(done, 4500));
    const taken = await s.repo.lock({ command: 'prune', staleSeconds: 3, onWarning: (m, f) => log.warn('lock.warning', m, f) });
    expect(log.lines.map((l) => l.message)).toEqual([expect.stringMatching(/breaking stale lock on s3:\/\/.*\/p held by backup on gone-pod \(pid 1\): no heartbeat for \d+s/)]);

    // Someone replaces it: the next heartbeat says so.
    await r.client().send(new PutObjectCommand({ Bucket: s.bucket, Key: 'p/.pvc-backup.lock', Body: body }));
    await new Promise((done) => setTimeout(done, 1500));
    expect(taken.lost).toBe(true);
    expect(log.lines.at(-1)?.message).toMatch(/was replaced by another run/);
    await taken.release();
    expect(await listKeys(r.client(), s.bucket)).toEqual(['p/.pvc-backup.lock']); // not ours any more: left alone
  });
});

describe('errors: one line naming the bucket, the operation and what to do', () => {
  function expectOneLine(error: unknown, pattern: RegExp, secrets: string[] = []) {
    expect(error).toBeInstanceOf(RunnerError);
    const e = error as RunnerError;
    expect(e.exitCode).toBe(1);
    expect(e.message).not.toMatch(/\n/);
    expect(e.message).toMatch(pattern);
    for (const s of secrets) expect(e.message).not.toContain(s);
  }

  test('wrong secret key', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const secret = 'definitely-not-the-secret-123';
    const error = await withEnv({ AWS_SECRET_ACCESS_KEY: secret }, () => bucketRepository(r, `s3://${bucket}/p`).list('backup')).catch((e: unknown) => e);
    expectOneLine(error, new RegExp(`^s3://${bucket}/p: cannot list s3://${bucket}/p: the request signature does not match \\(SignatureDoesNotMatch, HTTP 403\\); check AWS_SECRET_ACCESS_KEY$`), [secret, r.accessKeyId]);
  });

  test('unknown access key', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const error = await withEnv({ AWS_ACCESS_KEY_ID: 'nobody-knows-me' }, () => bucketRepository(r, `s3://${bucket}`).list('backup')).catch((e: unknown) => e);
    expectOneLine(error, /does not know this access key \(InvalidAccessKeyId, HTTP 403\); check AWS_ACCESS_KEY_ID/, ['nobody-knows-me', r.secretAccessKey]);
  });

  test('no credentials at all', async () => {
    const r = rgw();
    const error = await withEnv({ AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' }, () =>
      bucketRepository(r, 's3://some-bucket').list('backup'),
    ).catch((e: unknown) => e);
    expectOneLine(error, /^s3:\/\/some-bucket: cannot list s3:\/\/some-bucket: no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
  });

  test('missing bucket', async () => {
    const error = await bucketRepository(rgw(), 's3://no-such-bucket-here/p').list('backup').catch((e: unknown) => e);
    expectOneLine(error, /^s3:\/\/no-such-bucket-here\/p: cannot list .*: bucket no-such-bucket-here does not exist at http:\/\/127\.0\.0\.1:\d+ \(NoSuchBucket, HTTP 404\); create it/);
  });

  test('a 403 on list (credentials of a user without access to the bucket)', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const other = r.user(`reader${randomBytes(3).toString('hex')}`);
    const error = await withEnv(r.env(other), () => bucketRepository(r, `s3://${bucket}/p`).list('backup')).catch((e: unknown) => e);
    expectOneLine(error, /cannot list .*: access denied \(AccessDenied, HTTP 403\); the credentials may not list here: grant it in the bucket or user policy/, [other.secretAccessKey]);
  });

  test('a header the store rejects (a storage class it does not have)', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const repo = bucketRepository(r, `s3://${bucket}/p`, {}, { storageClass: 'GLACIER' });
    const error = await publish(repo, 'backup-20240101T000000Z.tar').catch((e: unknown) => e);
    expectOneLine(error, /cannot upload .*: the store rejected the request \(InvalidArgument, HTTP 400\); it may not support --s3-storage-class GLACIER: remove or change it/);
    expect(await listKeys(r.client(), bucket)).toEqual([]);
  });

  test('SSE-KMS on a store without KMS, in a multipart upload', async () => {
    const r = rgw();
    const bucket = await r.bucket();
    const repo = bucketRepository(r, `s3://${bucket}/p`, {}, { sse: 'aws:kms', sseKmsKeyId: 'key-1' });
    const sink = await repo.createArchive('backup-20240101T000000Z.tar');
    const failure = await feed(sink, randomBytes(20 * MiB)).then(() => sink.commit({ sha256: '0'.repeat(64), manifest: '{}' })).catch((e: unknown) => e);
    expectOneLine(failure, /cannot start the upload of .*: the store rejected the request \(InvalidArgument, HTTP 400\); it may not support --s3-sse aws:kms/);
    expect((await r.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).toEqual([]);
  });

  test('an endpoint nobody listens on', async () => {
    const r = rgw();
    const repo = bucketRepository(r, 's3://some-bucket/p', { maxAttempts: 1 }, { endpoint: 'http://127.0.0.1:9' });
    const error = await repo.list('backup').catch((e: unknown) => e);
    expectOneLine(error, /^s3:\/\/some-bucket\/p: cannot list .*: cannot reach the store at http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\); check --s3-endpoint/);
  });

  test('a store that stops answering fails the request in time instead of hanging the run', async () => {
    // Accepts connections and never answers, as RGW does while its OSDs are full.
    const silent = net.createServer((socket) => socket.on('error', () => undefined));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const repo = bucketRepository(rgw(), 's3://some-bucket/p', { maxAttempts: 1, requestTimeoutMs: 1500 }, { endpoint });
      const started = Date.now();
      const error = await repo.list('backup').catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(10_000);
      expectOneLine(error, /cannot list .*: the store at http:\/\/127\.0\.0\.1:\d+ did not answer in time, also after retries \(ETIMEDOUT\); it may be overloaded or full/);
    } finally {
      silent.close();
    }
  });

  test('a read of an object that is not there', async () => {
    const s = await bucketSubject(rgw(), 'p');
    await expect(s.repo.read('backup-20240101T000000Z.tar')).rejects.toThrow(/^no backup-20240101T000000Z\.tar in s3:\/\/.*\/p$/);
    expect(await s.repo.stat(sha256Name('x'))).toBeUndefined();
    expect(await s.repo.readSmall(manifestName('x'))).toBeUndefined();
  });
});
