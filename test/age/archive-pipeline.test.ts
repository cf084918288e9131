import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { AgeDecryptor, AgeEncryptor, X25519Recipient } from '../../runner/archive/age/index.js';
import { BufferPool } from '../../runner/archive/buffer-pool.js';
import { CHUNK_BYTES, createCompressor, createDecompressor } from '../../runner/archive/compress.js';
import { TarPacker } from '../../runner/archive/pack.js';
import { TarReader } from '../../runner/archive/tar-reader.js';
import { excludeMatcher } from '../../runner/archive/walk.js';
import type { Compression } from '../../runner/config.js';
import { RunnerError } from '../../runner/errors.js';
import { ageCli, ageKeygen, identityOf } from '../helpers/age.js';
import { shell, shq, tool } from '../helpers/cli.js';
import { buildRichTree, snapshotTree, useTempDirs } from '../helpers/tree.js';

/**
 * The engine in the places the runner will put it. Write side: our tar packer → compressor →
 * AgeEncryptor (a sink) → file + SHA-256 of the encrypted bytes; the by-hand commands of the
 * README then work on the result: `sha256sum -c` without the key, `age -d -i KEY | tar -x`.
 * Read side: file → hash → AgeDecryptor (a Transform) → decompressor → tar reader, on archives
 * the user made by hand with `tar | age -r`.
 */

const tempDir = useTempDirs('file');
const key = ageKeygen();
const EXT: Record<Compression, string> = { gzip: '.tar.gz', zstd: '.tar.zst', none: '.tar' };
const TAR_FLAG: Record<Compression, string> = { gzip: '--gzip', zstd: '--zstd', none: '' };

async function keyFile(): Promise<string> {
  const file = path.join(await tempDir('age-key'), 'key.txt');
  fs.writeFileSync(file, key.file, { mode: 0o600 });
  return file;
}

/** Packs `source` into `<dest>/<name>.age` the way a backup would, returning the sha256 of the file. */
async function encryptedBackup(source: string, file: string, compression: Compression): Promise<string> {
  const fd = fs.openSync(file, 'wx');
  const hash = createHash('sha256');
  const pool = new BufferPool(CHUNK_BYTES[compression], 5);
  // The file sink writes and hashes each buffer before returning, so the encryptor may reuse it.
  const encryptor = new AgeEncryptor(
    [X25519Recipient.parse(key.recipient)],
    (chunk) => {
      fs.writeSync(fd, chunk);
      hash.update(chunk);
    },
    { sinkCopies: true },
  );
  const compressor = createCompressor(compression, undefined, encryptor.append, (chunk) => pool.give(chunk));
  const packer = new TarPacker({ source, exclude: excludeMatcher([]), skipUnreadable: false, pool, xattrs: false, onFile: () => undefined });
  for await (const chunk of packer.chunks()) await compressor.write(chunk);
  await compressor.end();
  encryptor.end();
  fs.closeSync(fd);
  return hash.digest('hex');
}

/** Reads an encrypted archive the way verify/restore would: hash, decrypt, decompress, parse tar. */
async function readEncrypted(file: string, compression: Compression): Promise<{ sha256: string; entries: number; reachedEnd: boolean }> {
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _e, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const reader = new TarReader({ entry: () => undefined });
  const consume = async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) reader.write(chunk);
  };
  const decompressor = createDecompressor(compression);
  const decryptor = new AgeDecryptor([identityOf(key)]);
  if (decompressor) await pipeline(fs.createReadStream(file), tap, decryptor, decompressor, consume);
  else await pipeline(fs.createReadStream(file), tap, decryptor, consume);
  reader.end();
  return { sha256: hash.digest('hex'), entries: reader.entries, reachedEnd: reader.reachedEnd };
}

describe('age in the archive pipeline', () => {
  for (const compression of ['zstd', 'gzip', 'none'] as const) {
    it(`${compression}: our encrypted archive passes sha256sum -c without the key and extracts with age -d | tar`, async () => {
      const source = await tempDir('age-src');
      buildRichTree(source, { bigFileBytes: 5 * 1024 * 1024 });
      const dest = await tempDir('age-dest');
      const name = `backup-20240102T030405Z${EXT[compression]}.age`;
      const sha256 = await encryptedBackup(source, path.join(dest, name), compression);
      fs.writeFileSync(path.join(dest, `${name}.sha256`), `${sha256}  ${name}\n`);

      expect(tool('sha256sum', ['-c', `${name}.sha256`], { cwd: dest }).toString()).toBe(`${name}: OK\n`);
      const out = await tempDir('age-out');
      shell(`age -d -i ${shq(await keyFile())} ${shq(path.join(dest, name))} | tar ${TAR_FLAG[compression]} -x -f - -C ${shq(out)}`);
      expect(snapshotTree(out, { root: false })).toEqual(snapshotTree(source, { root: false }));

      // And our own read side takes it back, to tar's end marker.
      const read = await readEncrypted(path.join(dest, name), compression);
      expect(read.sha256).toBe(sha256);
      expect(read.reachedEnd).toBe(true);
      expect(read.entries).toBe(snapshotTree(source).length);
    });
  }

  it('an archive made by hand (tar --zstd | age -r) reads through our decryptor; truncated, it fails with exit 3', async () => {
    const source = await tempDir('age-src');
    buildRichTree(source);
    const dest = await tempDir('age-dest');
    const file = path.join(dest, 'by-hand.tar.zst.age');
    shell(`tar --zstd -c -f - -C ${shq(source)} . | age -r ${shq(key.recipient)} > ${shq(file)}`);
    const listed = tool('tar', ['-t', '-f', '-', '--zstd'], { input: ageCli(['-d', '-i', await keyFile(), file]) }).toString().split('\n').filter(Boolean);
    const read = await readEncrypted(file, 'zstd');
    expect(read.reachedEnd).toBe(true);
    expect(read.entries).toBe(listed.length);

    // The last bytes missing: zstd and tar may have all they need, but the age stream has not ended.
    const cut = path.join(dest, 'cut.tar.zst.age');
    fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, fs.statSync(file).size - 1));
    const error = await readEncrypted(cut, 'zstd').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RunnerError);
    expect((error as RunnerError).exitCode).toBe(3);
    expect((error as RunnerError).code).toBe('AGE_PAYLOAD');
  });
});
