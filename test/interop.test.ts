import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ManifestDocument as Manifest } from '../runner/archive/manifest.js';
import { archivesIn, runCli, shell, shq, tool } from './helpers/cli.js';
import { OTHER_UID, type RichTree, buildRichTree, expectedArchivePaths, isRoot, snapshotTree, useTempDirs } from './helpers/tree.js';

/**
 * Archives written by pvc-backup are plain tar that standard tools read: a rich tree goes
 * through `pvc-backup backup` and comes back out of GNU tar and busybox tar unchanged.
 */

const compressions = [
  { compression: 'gzip', ext: '.tar.gz', gnuFlag: ['-z'] },
  { compression: 'zstd', ext: '.tar.zst', gnuFlag: ['--zstd'] },
  { compression: 'none', ext: '.tar', gnuFlag: [] },
] as const;

const tempDir = useTempDirs('file');
let source: string;
let tree: RichTree;
const archives = new Map<string, { dest: string; file: string }>();

beforeAll(async () => {
  if (!isRoot) console.warn('interop: not running as root, so ownership (uid/gid) round-trips are not checked');
  source = await tempDir('src');
  tree = buildRichTree(source);
  for (const { compression } of compressions) {
    const dest = await tempDir(`dest-${compression}`);
    const result = await runCli(['backup', '--source', source, '--dest', dest, '--compression', compression]);
    expect(result.stderr).toBe('');
    expect(result.code, result.stdout).toBe(0);
    const [name] = archivesIn(dest);
    archives.set(compression, { dest, file: path.join(dest, name!) });
  }
});

function archive(compression: string) {
  return archives.get(compression)!;
}

/** The source as it should come back: owners only when they can be restored (as root). */
function sourceSnapshot() {
  return snapshotTree(source, { owner: isRoot });
}

describe('a rich tree backed up by pvc-backup', () => {
  it('holds the long, unicode and odd names the test needs', () => {
    expect(Buffer.byteLength(tree.longPath)).toBeGreaterThan(100);
    expect(Buffer.byteLength(tree.veryLongPath)).toBeGreaterThan(255);
    const names = sourceSnapshot().map((e) => e.path);
    for (const p of [tree.longPath, tree.veryLongPath, tree.unicodeName, ...tree.oddNames, 'empty-dir', 'dangling-link']) {
      expect(names).toContain(p);
    }
    expect(sourceSnapshot().find((e) => e.path === 'links/hard-a.txt')?.hardlinks).toEqual(['links/hard-a.txt', 'links/hard-b.txt']);
    expect(sourceSnapshot().find((e) => e.path === 'modes/setgid-dir')?.mode).toBe(0o2755);
    // As root, the ownership comparisons below are only meaningful if some entries have another owner.
    expect(tree.chowned).toBe(isRoot);
    if (isRoot) expect(sourceSnapshot().filter((e) => e.uid === OTHER_UID).map((e) => e.path)).toEqual(['data/nested', 'hello.txt', 'link-to-file']);
  });

  describe.each(compressions)('with --compression $compression', ({ compression, ext, gnuFlag }) => {
    it('names the archive <prefix>-<YYYYMMDD>T<HHMMSS>Z with the right extension', () => {
      const name = path.basename(archive(compression).file);
      expect(name).toMatch(new RegExp(`^backup-\\d{8}T\\d{6}Z${ext.replace(/\./g, '\\.')}$`));
    });

    it('extracts with GNU tar into exactly the source tree', async () => {
      const out = await tempDir('gnu');
      tool('tar', ['-x', ...gnuFlag, '-p', '--numeric-owner', '-f', archive(compression).file, '-C', out]);
      expect(snapshotTree(out, { owner: isRoot })).toEqual(sourceSnapshot());
    });

    it('extracts with busybox tar into exactly the source tree', async () => {
      const out = await tempDir('busybox');
      const file = archive(compression).file;
      if (compression === 'zstd') shell(`zstd -dc ${shq(file)} | busybox tar -x -C ${shq(out)}`);
      else tool('busybox', ['tar', '-x', ...(compression === 'gzip' ? ['-z'] : []), '-f', file, '-C', out]);
      // busybox tar does not lchown symlinks (GNU tar does, checked above): their owner is left out here.
      const withoutSymlinkOwner = (entries: ReturnType<typeof sourceSnapshot>) =>
        entries.map((e) => (e.type === 'symlink' ? { ...e, uid: undefined, gid: undefined } : e));
      expect(withoutSymlinkOwner(snapshotTree(out, { owner: isRoot }))).toEqual(withoutSymlinkOwner(sourceSnapshot()));
    });

    it('is listed by GNU tar -t with every path of the source', () => {
      const listing = tool('tar', ['-t', ...gnuFlag, '--quoting-style=literal', '-f', archive(compression).file]).toString('utf8');
      expect(listing).toBe(expectedArchivePaths(source).map((p) => `${p}\n`).join(''));
    });

    it('passes sha256sum -c on its .sha256 sidecar in the backup directory', () => {
      const { dest, file } = archive(compression);
      const output = tool('sha256sum', ['-c', `${path.basename(file)}.sha256`], { cwd: dest }).toString();
      expect(output).toBe(`${path.basename(file)}: OK\n`);
    });
  });
});

describe('the compressed streams', () => {
  it('passes gzip -t on the gzip archive', () => {
    expect(() => tool('gzip', ['-t', archive('gzip').file])).not.toThrow();
  });

  it('passes zstd -t on the zstd archive', () => {
    expect(() => tool('zstd', ['-q', '-t', archive('zstd').file])).not.toThrow();
  });

  it('is a single gzip member whose deflate stream ends right before the trailer', () => {
    const data = fs.readFileSync(archive('gzip').file);
    expect([...data.subarray(0, 3)]).toEqual([0x1f, 0x8b, 0x08]);
    const flags = data[3]!;
    expect(flags).toBe(0); // no name, comment or extra field: the deflate data starts at byte 10
    const { buffer, engine } = zlib.inflateRawSync(data.subarray(10), { info: true }) as unknown as { buffer: Buffer; engine: zlib.InflateRaw };
    expect(10 + engine.bytesWritten + 8).toBe(data.length);
    expect(data.readUInt32LE(data.length - 8)).toBe(zlib.crc32(buffer));
    expect(data.readUInt32LE(data.length - 4)).toBe(buffer.length % 2 ** 32);
  });

  it('decompresses with gunzip, busybox gunzip and zlib to the same tar a --compression none backup writes', () => {
    const gzipFile = archive('gzip').file;
    const plain = fs.readFileSync(archive('none').file);
    const viaGunzip = tool('gunzip', ['-c', gzipFile]);
    const viaBusybox = tool('busybox', ['gunzip', '-c', gzipFile]);
    const viaZlib = zlib.gunzipSync(fs.readFileSync(gzipFile));
    const viaZstd = tool('zstd', ['-dc', archive('zstd').file]);
    // Same tree, same walk order, same headers: the tar streams are byte-identical.
    for (const tar of [viaGunzip, viaBusybox, viaZlib, viaZstd]) {
      expect(tar.length).toBe(plain.length);
      expect(tar.equals(plain)).toBe(true);
    }
  });

  it('records in each manifest the tar length that the decompressed stream has', () => {
    const plainBytes = fs.statSync(archive('none').file).size;
    for (const { compression } of compressions) {
      const { file } = archive(compression);
      const manifest = JSON.parse(fs.readFileSync(`${file}.manifest.json`, 'utf8')) as Manifest;
      expect(manifest.tarBytes).toBe(plainBytes);
      expect(manifest.archiveBytes).toBe(fs.statSync(file).size);
    }
  });
});
