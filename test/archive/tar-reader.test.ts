import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readArchive } from '../../runner/archive/read.js';
import { TarReader, type TarEntry, type TarVisitor } from '../../runner/archive/tar-reader.js';
import { IntegrityError } from '../../runner/errors.js';
import { shell, shq, tool } from '../helpers/cli.js';
import { buildRichTree, snapshotTree, useTempDirs } from '../helpers/tree.js';

/**
 * The tar reader (used by verify and restore) reads what other tars write: GNU tar in its
 * gnu, posix (pax) and ustar formats, busybox tar, with gzip and zstd on top; and it reports
 * truncation and corruption instead of returning a short tree.
 */

const tempDir = useTempDirs();

interface Seen {
  entry: TarEntry;
  sha256?: string;
}

/** A visitor that records every entry and hashes file data. */
function recorder(): TarVisitor & { seen: Seen[] } {
  const seen: Seen[] = [];
  return {
    seen,
    entry(entry) {
      const record: Seen = { entry };
      seen.push(record);
      if (entry.type !== 'File') return undefined;
      const hash = createHash('sha256');
      return {
        data: (chunk) => hash.update(chunk),
        end: () => {
          record.sha256 = hash.digest('hex');
        },
      };
    },
  };
}

/** What the reader saw, in the shape of snapshotTree's entries (without owners). */
function asSnapshot(seen: Seen[]) {
  const byPath = new Map<string, string>();
  const rel = (p: string) => p.replace(/^\.\/?/, '').replace(/\/$/, '') || '.';
  const out = seen.map(({ entry, sha256 }) => {
    const p = rel(entry.path);
    switch (entry.type) {
      case 'Directory':
        return { path: p, type: 'dir', mode: entry.mode };
      case 'SymbolicLink':
        return { path: p, type: 'symlink', target: entry.linkpath };
      case 'Link': {
        const first = rel(entry.linkpath);
        byPath.set(p, first);
        return { path: p, type: 'file', link: first };
      }
      default:
        return { path: p, type: 'file', mode: entry.mode, size: entry.size, sha256, mtime: entry.mtime };
    }
  });
  // A hard link carries no data: it is the file it names.
  return out
    .map((e) => {
      if (!('link' in e)) return e;
      const target = out.find((t) => t.path === e.link)!;
      return { ...target, path: e.path };
    })
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The source snapshot reduced to what every tar format stores the same way. */
function expected(root: string) {
  return snapshotTree(root).map(({ hardlinks: _h, ...e }) => e);
}

describe('the tar reader reads archives other tools wrote', () => {
  const formats = [
    { name: 'GNU tar, gnu format (long-name entries)', create: ['tar', '--format=gnu'] },
    { name: 'GNU tar, posix format (pax headers)', create: ['tar', '--format=posix'] },
    { name: 'busybox tar', create: ['busybox', 'tar'] },
  ];

  it.each(formats)('$name: every entry, mode, mtime, link target and content of a rich tree', async ({ create }) => {
    const source = await tempDir('src');
    const out = await tempDir('out');
    buildRichTree(source, { bigFileBytes: 300_000 });
    const file = path.join(out, 'a.tar');
    tool(create[0]!, [...create.slice(1), '-c', '-f', file, '-C', source, '.']);
    const visitor = recorder();
    const result = await readArchive(file, 'none', visitor);
    expect(result.reader.reachedEnd).toBe(true);
    expect(asSnapshot(visitor.seen)).toEqual(expected(source));
  });

  it('GNU tar ustar format with names split into prefix and name', async () => {
    const source = await tempDir('src');
    const out = await tempDir('out');
    const dir = `${'p'.repeat(90)}/${'q'.repeat(40)}`;
    fs.mkdirSync(path.join(source, dir), { recursive: true });
    fs.writeFileSync(path.join(source, dir, `${'r'.repeat(80)}.txt`), 'split name\n');
    const file = path.join(out, 'a.tar');
    tool('tar', ['--format=ustar', '-c', '-f', file, '-C', source, '.']);
    const visitor = recorder();
    await readArchive(file, 'none', visitor);
    expect(asSnapshot(visitor.seen)).toEqual(expected(source));
  });

  it.each([
    { compression: 'gzip', flag: '-z' },
    { compression: 'zstd', flag: '--zstd' },
  ] as const)('GNU tar with $compression on top', async ({ compression, flag }) => {
    const source = await tempDir('src');
    const out = await tempDir('out');
    buildRichTree(source, { bigFileBytes: 300_000 });
    const file = path.join(out, 'a.tar.x');
    tool('tar', ['--format=posix', flag, '-c', '-f', file, '-C', source, '.']);
    const visitor = recorder();
    await readArchive(file, compression, visitor);
    expect(asSnapshot(visitor.seen)).toEqual(expected(source));
  });

  it('a zstd stream of several frames (zstd CLI output concatenated) is read to the end', async () => {
    const source = await tempDir('src');
    const out = await tempDir('out');
    buildRichTree(source, { bigFileBytes: 300_000 });
    const tar = path.join(out, 'a.tar');
    tool('tar', ['--format=posix', '-c', '-f', tar, '-C', source, '.']);
    // Cut the tar in three and compress each piece as its own frame.
    const file = path.join(out, 'a.tar.zst');
    const size = fs.statSync(tar).size;
    const third = Math.ceil(size / 3);
    shell(`{ ${[0, 1, 2].map((i) => `tail -c +${i * third + 1} ${shq(tar)} | head -c ${third} | zstd -q -c;`).join(' ')} } > ${shq(file)}`);
    expect(tool('zstd', ['-lv', file]).toString()).toMatch(/# Zstandard Frames: 3\b/);
    const visitor = recorder();
    const result = await readArchive(file, 'zstd', visitor);
    expect(result.tarBytes).toBe(size);
    expect(asSnapshot(visitor.seen)).toEqual(expected(source));
  });
});

describe('the tar reader refuses damaged archives', () => {
  async function plainTar() {
    const source = await tempDir('src');
    const out = await tempDir('out');
    fs.writeFileSync(path.join(source, 'one.txt'), 'x'.repeat(5000));
    fs.writeFileSync(path.join(source, 'two.txt'), 'y'.repeat(700));
    const file = path.join(out, 'a.tar');
    tool('tar', ['--format=posix', '-c', '-f', file, '-C', source, '.']);
    return fs.readFileSync(file);
  }

  function read(data: Buffer, chunkSize = 333): TarReader {
    const reader = new TarReader(recorder());
    for (let i = 0; i < data.length; i += chunkSize) reader.write(data.subarray(i, i + chunkSize));
    reader.end();
    return reader;
  }

  it('accepts the intact archive fed in odd-sized pieces, with GNU tar record padding', async () => {
    const data = await plainTar();
    expect(data.length % 10240).toBe(0);
    expect(read(data).reachedEnd).toBe(true);
    expect(read(data, 1).entries).toBe(3);
  });

  it('reports an archive cut inside an entry as truncated', async () => {
    const data = await plainTar();
    expect(() => read(data.subarray(0, 2048))).toThrow(/truncated/);
  });

  it('reports an archive without its end-of-archive blocks as truncated', async () => {
    const data = await plainTar();
    // Three entries of header + data: 3 pax headers + 3 headers + 10 + 2 data blocks... find the end marker instead.
    let end = data.length;
    while (end > 0 && data.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
    expect(() => read(data.subarray(0, end))).toThrow(/truncated: no tar end-of-archive marker/);
  });

  it('reports a damaged header as corrupt', async () => {
    const data = Buffer.from(await plainTar());
    data[0]! ^= 0x01; // the first header's name: its checksum no longer matches
    expect(() => read(data)).toThrow(IntegrityError);
    expect(() => read(data)).toThrow(/bad tar header checksum/);
  });

  it('reports data after the end-of-archive marker as corrupt', async () => {
    const data = Buffer.from(await plainTar());
    data[data.length - 10]! = 0x41;
    expect(() => read(data)).toThrow(/unexpected data after its tar end-of-archive marker/);
  });
});
