import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { LocalRepository } from '../../runner/repository/local.js';
import type { ArchiveSink, Repository } from '../../runner/repository/repository.js';
import { BucketRepository, type BucketRepositoryOptions } from '../../runner/repository/s3.js';
import { parseS3Settings } from '../../runner/repository/s3-settings.js';
import type { Rgw } from '../helpers/rgw.js';

/**
 * One repository under test plus raw access to what it stores (the directory's files, the
 * bucket's keys), so a test can see what a user of `ls` or `aws s3 ls` would see.
 */
export interface Subject {
  repo: Repository;
  /** Every name stored (hidden files and partials included; bucket: keys below the key prefix). */
  stored(): Promise<string[]>;
  /** Unfinished multipart uploads (bucket) or partial files (directory). */
  unfinished(): Promise<string[]>;
  /** Writes raw bytes under a name, bypassing the repository (foreign files, corruption). */
  putRaw(name: string, data: Buffer | string): Promise<void>;
  getRaw(name: string): Promise<Buffer>;
  /** Leaves an interrupted write behind, as a killed run would. */
  leaveInterrupted(name: string): Promise<void>;
}

export async function localSubject(dir: string): Promise<Subject> {
  return {
    repo: new LocalRepository(dir),
    stored: async () => fs.readdirSync(dir).sort(),
    unfinished: async () => fs.readdirSync(dir).filter((n) => n.endsWith('.partial')).sort(),
    putRaw: async (name, data) => fs.writeFileSync(path.join(dir, name), data),
    getRaw: async (name) => fs.readFileSync(path.join(dir, name)),
    leaveInterrupted: async (name) => fs.writeFileSync(path.join(dir, `.${name}.partial`), randomBytes(1000)),
  };
}

export function bucketRepository(rgw: Rgw, url: string, options: BucketRepositoryOptions = {}, flags: Record<string, string> = {}): BucketRepository {
  return new BucketRepository(parseS3Settings({ remote: url, ...flags }, rgw.env()), options);
}

export async function bucketSubject(rgw: Rgw, keyPrefix = 'team/app', options: BucketRepositoryOptions = {}): Promise<Subject & { bucket: string; client: S3Client }> {
  const bucket = await rgw.bucket();
  const client = rgw.client();
  const head = keyPrefix ? `${keyPrefix}/` : '';
  const repo = bucketRepository(rgw, `s3://${bucket}/${keyPrefix}`, options);
  return {
    bucket,
    client,
    repo,
    stored: async () => (await listKeys(client, bucket)).filter((k) => k.startsWith(head)).map((k) => k.slice(head.length)).sort(),
    unfinished: async () => ((await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).map((u) => u.Key!).sort(),
    putRaw: async (name, data) => void (await client.send(new PutObjectCommand({ Bucket: bucket, Key: head + name, Body: data }))),
    getRaw: async (name) => Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: head + name }))).Body!.transformToByteArray()),
    leaveInterrupted: async (name) => {
      const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: head + name }));
      const part = randomBytes(5 * 1024 * 1024);
      await client.send(new UploadPartCommand({ Bucket: bucket, Key: head + name, UploadId: created.UploadId, PartNumber: 1, Body: part }));
    },
  };
}

export async function listKeys(client: S3Client, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((o) => o.Key!));
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes `data` through a sink in chunks of `chunk` bytes, awaiting drain as an archive writer does. */
export async function feed(sink: ArchiveSink, data: Buffer, chunk = 256 * 1024): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunk) {
    sink.append(data.subarray(offset, offset + chunk));
    await sink.drain();
  }
}

/** Publishes an archive with real bytes and a small manifest; returns its bytes. */
export async function publish(repo: Repository, name: string, data: Buffer = randomBytes(3000)): Promise<Buffer> {
  const sink = await repo.createArchive(name);
  await feed(sink, data);
  await sink.commit({ sha256: sha256(data), manifest: JSON.stringify({ format: 1, archive: name, archiveBytes: data.length, sha256: sha256(data) }) });
  return data;
}

export async function readAll(repo: Repository, name: string): Promise<Buffer> {
  const { stream } = await repo.read(name);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
