/**
 * One measured operation of `bench/age.ts`, run in its own process so its peak RSS is its own.
 * Prints one JSON line: {"seconds": <the operation alone, without process start-up>,
 * "cpuSeconds": <CPU time of the operation, all threads of this process>, "bytes": N}.
 *
 *   tsx bench/age-child.ts encrypt IN OUT RECIPIENT        AgeEncryptor, file to file
 *   tsx bench/age-child.ts decrypt IN KEYFILE              AgeDecryptor, file to /dev/null
 *   tsx bench/age-child.ts lib-encrypt IN OUT RECIPIENT    age-encryption (typage) stream API
 *   tsx bench/age-child.ts lib-decrypt IN KEYFILE          age-encryption (typage) stream API
 *   tsx bench/age-child.ts seal BYTES                      StreamSealer alone, in memory
 *   tsx bench/age-child.ts raw BYTES                       node:crypto ChaCha20-Poly1305, 64 KiB calls
 *   tsx bench/age-child.ts seal-workers BYTES N            STREAM sealing split over N worker threads
 *   tsx bench/age-child.ts pack DATASET OUT zstd|zstd+age RECIPIENT   tar packer + zstd (+ age) to a file
 *   tsx bench/age-child.ts unpack IN zstd|zstd+age KEYFILE            file (+ age) + zstd decode + tar parse
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';
import { Decrypter, Encrypter } from 'age-encryption';
import { AgeDecryptor, AgeEncryptor, X25519Recipient, readIdentityFile } from '../runner/archive/age/index.js';
import { StreamSealer } from '../runner/archive/age/stream.js';
import { BufferPool } from '../runner/archive/buffer-pool.js';
import { CHUNK_BYTES, createCompressor, createDecompressor } from '../runner/archive/compress.js';
import { TarPacker } from '../runner/archive/pack.js';
import { TarReader } from '../runner/archive/tar-reader.js';
import { excludeMatcher } from '../runner/archive/walk.js';
import { GarbageGovernor } from '../runner/memory.js';

const MiB = 1024 * 1024;
const READ_BYTES = 4 * MiB;

function* fileChunks(file: string): Generator<Buffer> {
  const fd = fs.openSync(file, 'r');
  const buffer = Buffer.allocUnsafe(READ_BYTES);
  try {
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) return;
      yield buffer.subarray(0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}

function fileSink(file: string): { write: (chunk: Buffer) => void; close: () => void } {
  const fd = fs.openSync(file, 'w');
  return {
    write: (chunk) => {
      let offset = 0;
      while (offset < chunk.length) offset += fs.writeSync(fd, chunk, offset);
    },
    close: () => fs.closeSync(fd),
  };
}

const devNull = () =>
  new Writable({
    highWaterMark: 4 * MiB,
    write: (chunk: Buffer, _e, done) => {
      governor.processed(chunk.length);
      done();
    },
  });

/** A 16 MiB random buffer handed out repeatedly: cipher speed without I/O. */
function* memoryChunks(total: number): Generator<Buffer> {
  const block = randomBytes(16 * MiB);
  for (let done = 0; done < total; done += block.length) yield block.subarray(0, Math.min(block.length, total - done));
}

/** Young garbage collected every 32 MiB, as the runner's read and write loops do. */
const governor = new GarbageGovernor();

async function encrypt(input: string, output: string, recipient: string): Promise<number> {
  const out = fileSink(output);
  const encryptor = new AgeEncryptor([X25519Recipient.parse(recipient)], out.write, { sinkCopies: true });
  for (const chunk of fileChunks(input)) {
    encryptor.append(chunk);
    governor.processed(chunk.length);
  }
  encryptor.end();
  out.close();
  return encryptor.plaintextBytes;
}

async function decrypt(input: string, keyFile: string): Promise<number> {
  const decryptor = new AgeDecryptor(readIdentityFile(keyFile));
  await pipeline(fs.createReadStream(input, { highWaterMark: READ_BYTES }), decryptor, devNull());
  return decryptor.plaintextBytes;
}

async function libEncrypt(input: string, output: string, recipient: string): Promise<number> {
  const e = new Encrypter();
  e.addRecipient(recipient);
  const encrypted = await e.encrypt(Readable.toWeb(fs.createReadStream(input, { highWaterMark: READ_BYTES })) as ReadableStream<Uint8Array>);
  await pipeline(Readable.fromWeb(encrypted as import('node:stream/web').ReadableStream<Uint8Array>), fs.createWriteStream(output));
  return fs.statSync(input).size;
}

async function libDecrypt(input: string, keyFile: string): Promise<number> {
  const d = new Decrypter();
  d.addIdentity(/AGE-SECRET-KEY-1\S+/.exec(fs.readFileSync(keyFile, 'utf8'))![0]);
  const plain = await d.decrypt(Readable.toWeb(fs.createReadStream(input, { highWaterMark: READ_BYTES })) as ReadableStream<Uint8Array>);
  let bytes = 0;
  for await (const chunk of Readable.fromWeb(plain as import('node:stream/web').ReadableStream<Uint8Array>)) {
    bytes += (chunk as Uint8Array).length;
    governor.processed((chunk as Uint8Array).length);
  }
  return bytes;
}

function seal(total: number): number {
  const sealer = new StreamSealer(randomBytes(32), () => undefined, { sinkCopies: true });
  for (const chunk of memoryChunks(total)) {
    sealer.append(chunk);
    governor.processed(chunk.length);
  }
  sealer.end();
  return sealer.plaintextBytes;
}

function raw(total: number): number {
  const key = randomBytes(32);
  const nonce = Buffer.alloc(12);
  let bytes = 0;
  for (const block of memoryChunks(total)) {
    for (let i = 0; i < block.length; i += 64 * 1024) {
      nonce.writeUInt32BE(bytes / 65536, 8);
      const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      cipher.update(block.subarray(i, i + 64 * 1024));
      cipher.final();
      cipher.getAuthTag();
      bytes += Math.min(64 * 1024, block.length - i);
    }
  }
  return bytes;
}

/**
 * STREAM chunks are independent given their counter, so batches of 16 chunks can be sealed on
 * worker threads in parallel and written in order: how much would threads give?
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createCipheriv } = require('node:crypto');
parentPort.on('message', ({ id, key, first, data }) => {
  const plain = Buffer.from(data);
  const chunks = plain.length / 65536;
  const out = Buffer.allocUnsafe(chunks * 65552);
  const nonce = Buffer.alloc(12);
  for (let i = 0; i < chunks; i++) {
    nonce.writeUInt32BE(first + i, 7);
    const c = createCipheriv('chacha20-poly1305', Buffer.from(key), nonce, { authTagLength: 16 });
    c.update(plain.subarray(i * 65536, (i + 1) * 65536)).copy(out, i * 65552);
    c.final();
    c.getAuthTag().copy(out, i * 65552 + 65536);
  }
  parentPort.postMessage({ id, out: out.buffer }, [out.buffer]);
});`;

async function sealWorkers(total: number, threads: number): Promise<number> {
  const key = randomBytes(32);
  const workers = Array.from({ length: threads }, () => new Worker(WORKER_SOURCE, { eval: true }));
  const block = randomBytes(16 * MiB);
  const batch = MiB;
  let sent = 0;
  let next = 0;
  const inFlight = new Map<number, Promise<ArrayBuffer>>();
  const submit = (id: number) => {
    const worker = workers[id % threads]!;
    const data = Buffer.from(block.subarray((id * batch) % block.length, ((id * batch) % block.length) + batch));
    inFlight.set(
      id,
      new Promise((resolve) => {
        const onMessage = (m: { id: number; out: ArrayBuffer }) => {
          if (m.id !== id) return;
          worker.off('message', onMessage);
          resolve(m.out);
        };
        worker.on('message', onMessage);
        worker.postMessage({ id, key, first: id * 16, data: data.buffer }, [data.buffer]);
      }),
    );
  };
  const batches = Math.floor(total / batch);
  while (sent < Math.min(batches, threads * 2)) submit(sent++);
  let bytes = 0;
  while (next < batches) {
    const out = await inFlight.get(next)!;
    inFlight.delete(next++);
    bytes += (out.byteLength / 65552) * 65536;
    if (sent < batches) submit(sent++);
  }
  await Promise.all(workers.map((w) => w.terminate()));
  return bytes;
}

async function pack(dataset: string, output: string, mode: string, recipient: string): Promise<number> {
  const out = fileSink(output);
  const pool = new BufferPool(CHUNK_BYTES.zstd, 5);
  const encryptor = mode === 'zstd+age' ? new AgeEncryptor([X25519Recipient.parse(recipient)], out.write, { sinkCopies: true }) : undefined;
  const compressor = createCompressor('zstd', undefined, encryptor ? encryptor.append : out.write, (c) => pool.give(c));
  let fileBytes = 0;
  const packer = new TarPacker({
    source: dataset,
    exclude: excludeMatcher([]),
    skipUnreadable: false,
    pool,
    xattrs: false,
    onFile: (f) => (fileBytes += f.type === 'file' ? f.size : 0),
  });
  for await (const chunk of packer.chunks()) {
    await compressor.write(chunk);
    governor.processed(chunk.length);
  }
  await compressor.end();
  encryptor?.end();
  out.close();
  return fileBytes;
}

async function unpack(input: string, mode: string, keyFile: string): Promise<number> {
  const reader = new TarReader({ entry: () => ({ data: () => undefined, end: () => undefined }) });
  const consume = async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) {
      reader.write(chunk);
      governor.processed(chunk.length);
    }
  };
  const decompress = createDecompressor('zstd') as (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer>;
  const file = fs.createReadStream(input, { highWaterMark: MiB });
  if (mode === 'zstd+age') await pipeline(file, new AgeDecryptor(readIdentityFile(keyFile)), decompress, consume);
  else await pipeline(file, decompress, consume);
  reader.end();
  return reader.bytes;
}

const [op, ...args] = process.argv.slice(2);
const started = performance.now();
const cpu = process.cpuUsage();
const a = (i: number) => args[i]!;
const bytes = await (async () => {
  switch (op) {
    case 'encrypt':
      return encrypt(a(0), a(1), a(2));
    case 'decrypt':
      return decrypt(a(0), a(1));
    case 'lib-encrypt':
      return libEncrypt(a(0), a(1), a(2));
    case 'lib-decrypt':
      return libDecrypt(a(0), a(1));
    case 'seal':
      return seal(Number(a(0)));
    case 'raw':
      return raw(Number(a(0)));
    case 'seal-workers':
      return sealWorkers(Number(a(0)), Number(a(1)));
    case 'pack':
      return pack(a(0), a(1), a(2), a(3));
    case 'unpack':
      return unpack(a(0), a(1), a(2));
    default:
      throw new Error(`unknown operation ${op}`);
  }
})();
const used = process.cpuUsage(cpu);
console.log(JSON.stringify({ seconds: (performance.now() - started) / 1000, cpuSeconds: (used.user + used.system) / 1e6, bytes }));
