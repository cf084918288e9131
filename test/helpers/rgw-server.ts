import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, PutBucketPolicyCommand, S3Client } from '@aws-sdk/client-s3';
import { repoRoot } from './cli.js';

/**
 * A real S3 endpoint for the tests and the bench: a single-node Ceph RADOS Gateway
 * (scripts/rgw.sh: one mon, one OSD, radosgw, all on 127.0.0.1 on free ports, state in a temp
 * dir), stopped by PID (scripts/rgw.sh stop) — also from an exit hook if the process ends
 * without stopping it. Test files use `useRgw()` from rgw.ts.
 */

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface Rgw extends Credentials {
  endpoint: string;
  region: string;
  dir: string;
  /** PIDs of mon, osd and radosgw. */
  pids: number[];
  /** The AWS_* variables a child process (or the SDK's default chain) needs, for these or other credentials. */
  env(credentials?: Credentials): Record<string, string>;
  /** Creates a bucket with a fresh name (or the one given) and returns its name. */
  bucket(name?: string): Promise<string>;
  /** Creates another RGW user and returns its keys. */
  user(uid: string): Credentials;
  /** Sets a bucket policy (JSON) as the owner. */
  policy(bucket: string, statements: Record<string, unknown>[]): Promise<void>;
  /** An SDK client with the owner's (or other) credentials, for setting up and inspecting. */
  client(credentials?: Credentials): S3Client;
  admin(...args: string[]): string;
  stop(): void;
}

const SCRIPT = path.join(repoRoot, 'scripts/rgw.sh');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function parseEnvFile(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_0-9]+)=(.*)$/.exec(line.trim());
    if (m) values[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  }
  return values;
}

export interface RgwOptions {
  objectstore?: 'memstore' | 'bluestore';
  storeGb?: number;
  /** Storage classes RGW accepts besides STANDARD. */
  storageClasses?: string[];
}

export async function startRgw(options: RgwOptions = {}): Promise<Rgw> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-rgw-'));
    const [port, monPort] = [await freePort(), await freePort()];
    try {
      const out = execFileSync('bash', [SCRIPT, 'start', dir], {
        env: {
          ...process.env,
          PORT: String(port),
          MON_PORT: String(monPort),
          OBJECTSTORE: options.objectstore ?? 'memstore',
          STORE_GB: String(options.storeGb ?? 3),
          STORAGE_CLASSES: (options.storageClasses ?? []).join(' '),
          OWNER_PID: String(process.pid),
        },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 120_000,
      });
      return makeRgw(dir, parseEnvFile(out));
    } catch (error) {
      // A port taken between our probe and the daemon's bind: try again with others.
      lastError = error;
      execFileSync('bash', [SCRIPT, 'stop', dir], { stdio: 'ignore' });
    }
  }
  const stderr = (lastError as { stderr?: string }).stderr ?? String(lastError);
  throw new Error(`could not start Ceph RGW: ${stderr}`);
}

function makeRgw(dir: string, values: Record<string, string>): Rgw {
  const endpoint = values.AWS_ENDPOINT_URL!;
  const region = values.AWS_REGION!;
  const owner = { accessKeyId: values.AWS_ACCESS_KEY_ID!, secretAccessKey: values.AWS_SECRET_ACCESS_KEY! };
  const clients: S3Client[] = [];
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    for (const c of clients) c.destroy();
    execFileSync('bash', [SCRIPT, 'stop', dir], { stdio: 'ignore', timeout: 60_000 });
    process.removeListener('exit', stop);
  };
  process.once('exit', stop);
  const client = (credentials: Credentials = owner) => {
    const c = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    clients.push(c);
    return c;
  };
  const ownerClient = client();
  const admin = (...args: string[]) => execFileSync('bash', [SCRIPT, 'admin', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return {
    ...owner,
    endpoint,
    region,
    dir,
    pids: (values.RGW_PIDS ?? '').split(/\s+/).filter(Boolean).map(Number),
    env: (credentials = owner) => ({
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: region,
    }),
    bucket: async (name = `t-${randomBytes(5).toString('hex')}`) => {
      await ownerClient.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    user: (uid) => {
      const keys = { accessKeyId: `${uid}-access`, secretAccessKey: `${uid}-secret-${randomBytes(8).toString('hex')}` };
      admin('user', 'create', `--uid=${uid}`, `--display-name=${uid}`, `--access-key=${keys.accessKeyId}`, `--secret-key=${keys.secretAccessKey}`);
      return keys;
    },
    policy: async (bucket, statements) => {
      await ownerClient.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy: JSON.stringify({ Version: '2012-10-17', Statement: statements }) }));
    },
    client,
    admin,
    stop,
  };
}

