import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ManifestDocument as Manifest } from '../../runner/archive/manifest.js';
import { type LogLine, archivesIn, jsonLines, runCli } from '../helpers/cli.js';
import { buildRichTree, useTempDirs, writeSparseFile, writeTree } from '../helpers/tree.js';

const tempDir = useTempDirs();

interface Made {
  source: string;
  dest: string;
  name: string;
  file: string;
}

/** A source with a few files of some size, backed up once into a fresh DEST. */
async function makeBackup(compression = 'gzip', options: { dest?: string; source?: string; prefix?: string } = {}): Promise<Made> {
  let source = options.source;
  if (!source) {
    source = await tempDir('src');
    writeTree(source, {
      'small.txt': 'small\n',
      'text/lorem.txt': 'lorem ipsum dolor sit amet\n'.repeat(4000),
      'bin/random.bin': Buffer.from(Array.from({ length: 150_000 }, (_, i) => (i * 2654435761) >>> 24)),
    });
  }
  const dest = options.dest ?? (await tempDir('dest'));
  const args = ['backup', '--source', source, '--dest', dest, '--compression', compression, '--log-format', 'json'];
  if (options.prefix) args.push('--prefix', options.prefix);
  const result = await runCli(args);
  expect(result.code, result.stdout).toBe(0);
  const name = jsonLines(result.stdout).find((l) => l.event === 'backup.done')!.archive as string;
  return { source, dest, name, file: path.join(dest, name) };
}

async function verify(dest: string, extra: string[] = []) {
  const result = await runCli(['verify', '--dest', dest, '--log-format', 'json', ...extra]);
  return { ...result, lines: jsonLines(result.stdout) };
}

function failures(lines: LogLine[]): string[] {
  return lines.filter((l) => l.event === 'verify.failed').map((l) => l.msg);
}

function flipBit(file: string, offset: number, bit = 0x10): void {
  const fd = fs.openSync(file, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, offset);
  byte[0]! ^= bit;
  fs.writeSync(fd, byte, 0, 1, offset);
  fs.closeSync(fd);
}

function editManifest(file: string, edit: (m: Manifest) => void): void {
  const manifestFile = `${file}.manifest.json`;
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest;
  edit(manifest);
  fs.writeFileSync(manifestFile, JSON.stringify(manifest, null, 2));
}

async function listJson(dest: string, prefix?: string) {
  const result = await runCli(['list', '--dest', dest, '--json', ...(prefix ? ['--prefix', prefix] : [])]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as { name: string; verified: string; verifiedAt: string | null }[];
}

describe('verify on a fresh archive', () => {
  it.each(['gzip', 'zstd', 'none'])('passes for a %s archive and logs the entries and checksum', async (compression) => {
    const made = await makeBackup(compression);
    const result = await verify(made.dest);
    expect(result.code, result.stdout).toBe(0);
    const ok = result.lines.find((l) => l.event === 'verify.ok');
    expect(ok).toMatchObject({ archive: made.name, entries: 6, sha256: fs.readFileSync(`${made.file}.sha256`, 'utf8').slice(0, 64) });
  });

  it('passes on a rich tree with long names, links and odd characters', async () => {
    const source = await tempDir('src');
    buildRichTree(source, { bigFileBytes: 100_000 });
    const made = await makeBackup('gzip', { source });
    const result = await verify(made.dest);
    expect(result.code, result.stdout).toBe(0);
  });
});

describe('verify on a damaged archive exits 3 and names the problem', () => {
  it.each(['gzip', 'zstd', 'none'])('when one bit in the middle of a %s archive is flipped', async (compression) => {
    const made = await makeBackup(compression);
    flipBit(made.file, Math.floor(fs.statSync(made.file).size / 2));
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    const [message] = failures(result.lines);
    expect(message).toContain(made.name);
    expect(message).toMatch(/corrupt|damaged|checksum mismatch|does not match/);
  });

  it.each(['gzip', 'zstd', 'none'])('when a %s archive is truncated', async (compression) => {
    const made = await makeBackup(compression);
    fs.truncateSync(made.file, Math.floor(fs.statSync(made.file).size * 0.6));
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toMatch(/truncated|corrupt|unexpected end/i);
  });

  it('when the .sha256 sidecar was tampered with', async () => {
    const made = await makeBackup();
    const sidecar = `${made.file}.sha256`;
    const text = fs.readFileSync(sidecar, 'utf8');
    fs.writeFileSync(sidecar, (text[0] === 'a' ? 'b' : 'a') + text.slice(1));
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toMatch(/checksum mismatch/);
  });

  it("when the manifest's sha256 of one file was changed", async () => {
    const made = await makeBackup();
    editManifest(made.file, (m) => {
      const entry = m.files.find((f) => f.path === './text/lorem.txt')!;
      entry.sha256 = '0'.repeat(64);
    });
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toMatch(/\.\/text\/lorem\.txt does not match its checksum/);
  });

  // A large file arrives in many pieces (a streaming hash, not the one-call hash of a small file);
  // a mismatch in the middle of the archive and one in its last file are both found.
  it.each(['big/middle.bin', 'zz-last.bin'])("when the manifest's sha256 of the large file %s was changed", async (changed) => {
    const source = await tempDir('src');
    const large = () => randomBytes(3 * 1024 * 1024 + 17);
    writeTree(source, { 'a.txt': 'first\n', 'big/middle.bin': large(), 'big/small-after.txt': 'after\n', 'zz-last.bin': large() });
    const made = await makeBackup('zstd', { source });
    expect((await verify(made.dest)).code).toBe(0);
    editManifest(made.file, (m) => {
      m.files.find((f) => f.path === `./${changed}`)!.sha256 = '0'.repeat(64);
    });
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toContain(`./${changed} does not match its checksum in the manifest`);
    expect(result.lines.some((l) => l.event === 'verify.ok')).toBe(false);
  });

  // A hole longer than one slice is hashed in turns of the event loop, and the file's later data
  // waits for it: a changed checksum is still found, and the run still fails.
  it("when the manifest's sha256 of a sparse file with a 100 MiB hole was changed", async () => {
    const source = await tempDir('src');
    writeSparseFile(path.join(source, 'disk.img'), 101 * 1024 * 1024, [
      [0, randomBytes(64 * 1024)],
      [100 * 1024 * 1024, randomBytes(64 * 1024)],
    ]);
    writeTree(source, { 'z-after.txt': 'after\n' });
    const made = await makeBackup('zstd', { source });
    expect((await verify(made.dest)).code).toBe(0);
    editManifest(made.file, (m) => {
      m.files.find((f) => f.path === './disk.img')!.sha256 = '0'.repeat(64);
    });
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toContain('./disk.img does not match its checksum in the manifest');
    expect(result.lines.some((l) => l.event === 'verify.ok')).toBe(false);
  });

  it('when an entry was removed from the manifest', async () => {
    const made = await makeBackup();
    editManifest(made.file, (m) => {
      m.files = m.files.filter((f) => f.path !== './small.txt');
    });
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toMatch(/\.\/small\.txt differs from the manifest|more entries than its manifest/);
  });

  it('when the .sha256 sidecar is missing', async () => {
    const made = await makeBackup();
    fs.rmSync(`${made.file}.sha256`);
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toContain(`has no ${made.name}.sha256`);
  });

  it('when the manifest is missing', async () => {
    const made = await makeBackup();
    fs.rmSync(`${made.file}.manifest.json`);
    const result = await verify(made.dest);
    expect(result.code).toBe(3);
    expect(failures(result.lines)[0]).toContain(`has no ${made.name}.manifest.json`);
  });
});

describe('choosing what verify checks', () => {
  async function threeArchives() {
    const first = await makeBackup();
    const second = await makeBackup('zstd', { source: first.source, dest: first.dest });
    const third = await makeBackup('none', { source: first.source, dest: first.dest });
    const other = await makeBackup('gzip', { source: first.source, dest: first.dest, prefix: 'other' });
    return { dest: first.dest, names: [first.name, second.name, third.name], files: [first.file, second.file, third.file], other };
  }

  it('--all verifies every archive of the prefix and reports the damaged one', async () => {
    const { dest, names, files, other } = await threeArchives();
    fs.truncateSync(other.file, 10); // another prefix: never looked at
    const clean = await verify(dest, ['--all']);
    expect(clean.code, clean.stdout).toBe(0);
    expect(clean.lines.filter((l) => l.event === 'verify.ok').map((l) => l.archive).sort()).toEqual([...names].sort());

    flipBit(files[1]!, Math.floor(fs.statSync(files[1]!).size / 2));
    const damaged = await verify(dest, ['--all']);
    expect(damaged.code).toBe(3);
    expect(damaged.lines.filter((l) => l.event === 'verify.ok').map((l) => l.archive).sort()).toEqual([names[0], names[2]].sort());
    expect(damaged.lines.filter((l) => l.event === 'verify.failed' && l.archive === names[1])).toHaveLength(1);
    expect(damaged.lines.find((l) => l.event === 'verify.done')).toMatchObject({ verified: 2, failed: 1 });
  });

  it('--latest (and no selection) verifies only the newest archive', async () => {
    const { dest, names, files } = await threeArchives();
    fs.truncateSync(files[0]!, 100);
    for (const args of [['--latest'], []]) {
      const result = await verify(dest, args);
      expect(result.code, result.stdout).toBe(0);
      expect(result.lines.filter((l) => l.event === 'verify.ok').map((l) => l.archive)).toEqual([names[2]]);
    }
  });

  it('an explicit ARCHIVE name verifies that archive', async () => {
    const { dest, names, files } = await threeArchives();
    fs.truncateSync(files[0]!, 100);
    const good = await verify(dest, [names[1]!]);
    expect(good.code, good.stdout).toBe(0);
    expect(good.lines.filter((l) => l.event === 'verify.ok').map((l) => l.archive)).toEqual([names[1]]);
    const bad = await verify(dest, [names[0]!]);
    expect(bad.code).toBe(3);
    expect(failures(bad.lines)[0]).toContain(names[0]);
    const missing = await verify(dest, ['backup-20000101T000000Z.tar.gz']);
    expect(missing.code).toBe(2);
  });

  it('records the result, which list --json shows', async () => {
    const made = await makeBackup();
    expect((await listJson(made.dest))[0]).toMatchObject({ name: made.name, verified: 'verified' });
    fs.truncateSync(made.file, 50);
    const failed = await verify(made.dest);
    expect(failed.code).toBe(3);
    const [row] = await listJson(made.dest);
    expect(row).toMatchObject({ name: made.name, verified: 'failed' });
    expect(Date.parse(row!.verifiedAt!)).toBeGreaterThan(Date.now() - 60_000);
  });
});

describe('the freshness check of verify --schedule', () => {
  const schedule = ['--schedule', '0 0 * * *', '--time-zone', 'Etc/UTC', '--grace', '1h'];

  it('passes when the newest archive is from this run', async () => {
    const made = await makeBackup();
    const result = await verify(made.dest, schedule);
    expect(result.code, result.stdout).toBe(0);
    expect(result.lines.some((l) => l.event === 'verify.fresh')).toBe(true);
  });

  it('fails with exit 1 saying backups are missing when the newest archive is old', async () => {
    const made = await makeBackup();
    const old = 'backup-20200101T000000Z.tar.gz';
    fs.renameSync(made.file, path.join(made.dest, old));
    fs.renameSync(`${made.file}.manifest.json`, path.join(made.dest, `${old}.manifest.json`));
    fs.writeFileSync(path.join(made.dest, `${old}.sha256`), fs.readFileSync(`${made.file}.sha256`, 'utf8').replace(made.name, old));
    fs.rmSync(`${made.file}.sha256`);
    expect(archivesIn(made.dest)).toEqual([old]);

    const result = await verify(made.dest, schedule);
    expect(result.code).toBe(1);
    expect(result.lines.find((l) => l.event === 'verify.ok')?.archive).toBe(old);
    const missing = result.lines.find((l) => l.event === 'verify.missing');
    expect(missing?.msg).toMatch(/backups are missing: the newest archive backup-20200101T000000Z\.tar\.gz is from 2020-01-01/);
  });

  it('fails with exit 1 when there is no archive at all', async () => {
    const dest = await tempDir('dest');
    const result = await verify(dest, schedule);
    expect(result.code).toBe(1);
    expect(result.lines.find((l) => l.event === 'verify.missing')?.msg).toMatch(/backups are missing: there is no archive with prefix backup/);
  });
});
