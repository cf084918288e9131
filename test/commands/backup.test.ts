import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MANIFEST_FORMAT, type ManifestDocument as Manifest } from '../../runner/archive/manifest.js';
import { archiveFileName, formatTimestamp } from '../../runner/store/naming.js';
import { archivesIn, distDir, ensureBuilt, jsonLines, packageVersion, runCli, tarList, tool } from '../helpers/cli.js';
import { buildRichTree, exactState, expectedArchivePaths, isRoot, useTempDirs, writeTree } from '../helpers/tree.js';

const tempDir = useTempDirs();

async function sourceAndDest(files: Record<string, string | Buffer> = { 'a.txt': 'a\n' }) {
  const source = await tempDir('src');
  const dest = await tempDir('dest');
  writeTree(source, files);
  return { source, dest };
}

/** Runs a backup with JSON logs and returns the result plus its parsed lines. */
async function backup(source: string, dest: string, extra: string[] = [], options: Parameters<typeof runCli>[1] = {}) {
  const result = await runCli(['backup', '--source', source, '--dest', dest, '--log-format', 'json', ...extra], options);
  return { ...result, lines: jsonLines(result.stdout) };
}

function readManifest(file: string): Manifest {
  return JSON.parse(fs.readFileSync(`${file}.manifest.json`, 'utf8')) as Manifest;
}

function failure(lines: ReturnType<typeof jsonLines>) {
  return lines.find((l) => l.event === 'backup.failed');
}

describe('the manifest of a backup', () => {
  it('has every field the contract lists, with values that match the archive and the source', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    buildRichTree(source, { bigFileBytes: 200_000 });
    const before = Date.now();
    const result = await backup(source, dest, ['--exclude', 'nothing-matches-*']);
    expect(result.code, result.stdout).toBe(0);
    const [name] = archivesIn(dest);
    const file = path.join(dest, name!);
    const manifest = readManifest(file);

    for (const field of ['format', 'prefix', 'createdAt', 'source', 'compression', 'archiveBytes', 'sha256', 'entryCount', 'totalBytes', 'files', 'excludes', 'runnerVersion', 'durationSeconds']) {
      expect(manifest, field).toHaveProperty(field);
    }
    expect(manifest.format).toBe(MANIFEST_FORMAT);
    expect(manifest.prefix).toBe('backup');
    expect(manifest.source).toBe(source);
    expect(manifest.compression).toBe('gzip');
    expect(manifest.runnerVersion).toBe(packageVersion);
    expect(manifest.excludes).toEqual(['nothing-matches-*']);
    expect(manifest.durationSeconds).toBeGreaterThanOrEqual(0);
    const created = Date.parse(manifest.createdAt);
    expect(created).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(created).toBeLessThanOrEqual(Date.now());
    expect(name).toBe(`backup-${formatTimestamp(new Date(created))}.tar.gz`);

    expect(manifest.archiveBytes).toBe(fs.statSync(file).size);
    expect(manifest.sha256).toBe(tool('sha256sum', [file]).toString().slice(0, 64));

    const paths = expectedArchivePaths(source);
    expect(manifest.entryCount).toBe(paths.length);
    expect(manifest.files.map((f) => f.path)).toEqual(paths);

    // Every regular file: the manifest's sha256 is sha256sum's; size, mode and mtime are the source's.
    let uniqueBytes = 0;
    const seenInodes = new Set<number>();
    for (const entry of manifest.files) {
      const abs = path.join(source, entry.path);
      const st = fs.lstatSync(abs);
      expect(entry.mode, entry.path).toBe(st.mode & 0o7777);
      expect(entry.mtime, entry.path).toBe(Math.floor(st.mtimeMs / 1000));
      expect([entry.uid, entry.gid], entry.path).toEqual([st.uid, st.gid]);
      if (st.isSymbolicLink()) expect(entry).toMatchObject({ type: 'symlink', linkTarget: fs.readlinkSync(abs) });
      if (st.isDirectory()) expect(entry.type).toBe('dir');
      if (!st.isFile()) continue;
      if (seenInodes.has(st.ino)) {
        expect(entry.type, entry.path).toBe('hardlink');
        expect(fs.lstatSync(path.join(source, entry.linkTarget!)).ino).toBe(st.ino);
        continue;
      }
      seenInodes.add(st.ino);
      uniqueBytes += st.size;
      expect(entry.type, entry.path).toBe('file');
      expect(entry.size, entry.path).toBe(st.size);
      const sum = tool('sha256sum', [], { input: fs.readFileSync(abs) }).toString().slice(0, 64);
      expect(entry.sha256, entry.path).toBe(sum);
    }
    expect(manifest.totalBytes).toBe(uniqueBytes);
    expect(manifest.files.filter((f) => f.type === 'hardlink')).toHaveLength(1);
  });
});

describe('archive naming', () => {
  it('gets -2 when the plain name of its second is taken, and never overwrites anything', async () => {
    const { source, dest } = await sourceAndDest();
    // Take the plain names of the next seconds, so the backup started in one of them must count up.
    const now = Date.now();
    const taken: string[] = [];
    for (let s = -1; s <= 20; s++) {
      const name = archiveFileName('backup', new Date(now + s * 1000), 'gzip');
      fs.writeFileSync(path.join(dest, name), `dummy ${name}\n`);
      taken.push(name);
    }
    const stat = (name: string) => fs.statSync(path.join(dest, name)).mtimeMs;
    const mtimes = taken.map(stat);
    const first = await backup(source, dest);
    const second = await backup(source, dest);
    expect(first.code, first.stdout).toBe(0);
    expect(second.code, second.stdout).toBe(0);
    const names = [first, second].map((r) => r.lines.find((l) => l.event === 'backup.done')!.archive as string);
    for (const name of names) expect(name).toMatch(/^backup-\d{8}T\d{6}Z-[23]\.tar\.gz$/);
    expect(taken).toContain(names[0]!.replace(/-\d\.tar\.gz$/, '.tar.gz'));
    expect(names[0]).not.toBe(names[1]);
    if (names[0]!.slice(0, 23) === names[1]!.slice(0, 23)) expect(names[1]).toMatch(/-3\.tar\.gz$/);
    // The dummies are exactly as they were.
    for (const name of taken) expect(fs.readFileSync(path.join(dest, name), 'utf8')).toBe(`dummy ${name}\n`);
    expect(taken.map(stat)).toEqual(mtimes);
  });

  it('counts up when only a sidecar of the plain name exists', async () => {
    const { source, dest } = await sourceAndDest();
    const now = Date.now();
    for (let s = -1; s <= 20; s++) {
      const name = archiveFileName('backup', new Date(now + s * 1000), 'gzip');
      fs.writeFileSync(path.join(dest, `${name}.sha256`), 'not ours\n');
    }
    const result = await backup(source, dest);
    expect(result.code, result.stdout).toBe(0);
    const [name] = archivesIn(dest);
    expect(name).toMatch(/^backup-\d{8}T\d{6}Z-2\.tar\.gz$/);
    const plain = name!.replace('-2.tar.gz', '.tar.gz');
    expect(fs.readFileSync(path.join(dest, `${plain}.sha256`), 'utf8')).toBe('not ours\n');
  });

  it('uses the prefix and the extension of the compression', async () => {
    const { source, dest } = await sourceAndDest();
    for (const compression of ['gzip', 'zstd', 'none']) {
      const result = await backup(source, dest, ['--prefix', 'db.main_1', '--compression', compression]);
      expect(result.code, result.stdout).toBe(0);
    }
    const names = archivesIn(dest);
    expect(names).toHaveLength(3);
    expect(names.filter((n) => /^db\.main_1-\d{8}T\d{6}Z(-\d+)?\.tar$/.test(n))).toHaveLength(1);
    expect(names.filter((n) => /^db\.main_1-\d{8}T\d{6}Z(-\d+)?\.tar\.gz$/.test(n))).toHaveLength(1);
    expect(names.filter((n) => /^db\.main_1-\d{8}T\d{6}Z(-\d+)?\.tar\.zst$/.test(n))).toHaveLength(1);
  });
});

describe('excludes', () => {
  const files = {
    'a.log': 'x',
    'keep.txt': 'x',
    'sub/b.log': 'x',
    'sub/keep.txt': 'x',
    'cache/x': 'x',
    'sub/cache/y': 'x',
    'other/cache': 'a file named cache is not a directory',
    'data/tmp/x': 'x',
    'data/tmp/sub/y': 'x',
    'data/keep.txt': 'x',
    'other/data/tmp/z': 'x',
  };

  it('match a name at any depth, directories only with a trailing slash, and whole paths when they hold a slash', async () => {
    const { source, dest } = await sourceAndDest(files);
    const patterns = ['*.log', 'cache/', 'data/tmp/*'];
    const result = await backup(source, dest, patterns.flatMap((p) => ['--exclude', p]));
    expect(result.code, result.stdout).toBe(0);
    const [name] = archivesIn(dest);
    expect(tarList(path.join(dest, name!))).toEqual([
      './',
      './data/',
      './data/keep.txt',
      './data/tmp/',
      './keep.txt',
      './other/',
      './other/cache',
      './other/data/',
      './other/data/tmp/',
      './other/data/tmp/z',
      './sub/',
      './sub/keep.txt',
    ]);
    expect(readManifest(path.join(dest, name!)).excludes).toEqual(patterns);
  });

  it('are read from PVC_BACKUP_EXCLUDE, one pattern per line', async () => {
    const { source, dest } = await sourceAndDest(files);
    const result = await backup(source, dest, [], { env: { PVC_BACKUP_EXCLUDE: '*.log\ncache/\n' } });
    expect(result.code, result.stdout).toBe(0);
    const [name] = archivesIn(dest);
    const listed = tarList(path.join(dest, name!));
    expect(listed.filter((p) => p.endsWith('.log') || p.includes('/cache/'))).toEqual([]);
    expect(listed).toContain('./other/cache');
    expect(listed).toContain('./data/tmp/sub/y');
    expect(readManifest(path.join(dest, name!)).excludes).toEqual(['*.log', 'cache/']);
  });
});

describe('preflight checks', () => {
  it('refuses an empty source with exit 1 and writes nothing', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    const result = await backup(source, dest);
    expect(result.code).toBe(1);
    expect(failure(result.lines)?.msg).toMatch(/is empty.*--allow-empty/);
    expect(fs.readdirSync(dest)).toEqual([]);
  });

  it('counts a source holding only an empty lost+found as empty, and backs it up with --allow-empty', async () => {
    const { source, dest } = await sourceAndDest({ 'lost+found/': '' });
    const refused = await backup(source, dest);
    expect(refused.code).toBe(1);
    expect(failure(refused.lines)?.msg).toMatch(/is empty/);
    expect(fs.readdirSync(dest)).toEqual([]);

    const allowed = await backup(source, dest, ['--allow-empty']);
    expect(allowed.code, allowed.stdout).toBe(0);
    const [name] = archivesIn(dest);
    expect(tarList(path.join(dest, name!))).toEqual(['./', './lost+found/']);
  });

  it('does not count a lost+found with content as empty', async () => {
    const { source, dest } = await sourceAndDest({ 'lost+found/#1234': 'recovered' });
    const result = await backup(source, dest);
    expect(result.code, result.stdout).toBe(0);
  });

  it('fails naming a FIFO, and skips it with a warning under --skip-unreadable', async () => {
    const { source, dest } = await sourceAndDest();
    tool('mkfifo', [path.join(source, 'pipe')]);
    const refused = await backup(source, dest);
    expect(refused.code).toBe(1);
    expect(failure(refused.lines)?.msg).toMatch(/\.\/pipe is a FIFO/);
    expect(fs.readdirSync(dest)).toEqual([]);

    const skipped = await backup(source, dest, ['--skip-unreadable']);
    expect(skipped.code, skipped.stdout).toBe(0);
    const warnings = skipped.lines.filter((l) => l.level === 'warn');
    expect(warnings.some((l) => l.msg.includes('./pipe'))).toBe(true);
    const [name] = archivesIn(dest);
    expect(tarList(path.join(dest, name!))).toEqual(['./', './a.txt']);
  });

  it('fails naming a socket, and skips it with a warning under --skip-unreadable', async () => {
    const { source, dest } = await sourceAndDest();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(source, 'app.sock'), resolve));
    try {
      const refused = await backup(source, dest);
      expect(refused.code).toBe(1);
      expect(failure(refused.lines)?.msg).toMatch(/\.\/app\.sock is a socket/);
      const skipped = await backup(source, dest, ['--skip-unreadable']);
      expect(skipped.code, skipped.stdout).toBe(0);
      expect(skipped.lines.some((l) => l.level === 'warn' && l.msg.includes('./app.sock'))).toBe(true);
      const [name] = archivesIn(dest);
      expect(tarList(path.join(dest, name!))).toEqual(['./', './a.txt']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses a file it cannot read (mode 000, not root), naming it', async () => {
    // As root the runner reads everything, so the CLI runs as "nobody" then.
    const { source, dest } = await sourceAndDest({ 'ok.txt': 'fine', 'private/secret.txt': 'hidden' });
    fs.chmodSync(path.join(source, 'private/secret.txt'), 0o000);
    const as = isRoot ? { uid: 65534, gid: 65534 } : {};
    if (isRoot) {
      fs.chmodSync(source, 0o755);
      fs.chownSync(dest, 65534, 65534);
    }
    const refused = await backup(source, dest, [], as);
    expect(refused.code).toBe(1);
    expect(failure(refused.lines)?.msg).toMatch(/\.\/private\/secret\.txt \(permission denied\)/);
    expect(fs.readdirSync(dest)).toEqual([]);

    const skipped = await backup(source, dest, ['--skip-unreadable'], as);
    expect(skipped.code, skipped.stdout).toBe(0);
    expect(skipped.lines.some((l) => l.level === 'warn' && l.msg.includes('./private/secret.txt'))).toBe(true);
    const [name] = archivesIn(dest);
    expect(tarList(path.join(dest, name!))).toEqual(['./', './ok.txt', './private/']);
  });
});

describe('the directory lock', () => {
  it('makes a backup exit 4 and write nothing while a live process holds it', async () => {
    const { source, dest } = await sourceAndDest();
    const first = await backup(source, dest);
    expect(first.code, first.stdout).toBe(0);

    ensureBuilt();
    const lockModule = pathToFileURL(path.join(distDir, 'runner/store/lock.js')).href;
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { acquireLock } = await import(${JSON.stringify(lockModule)});
         const lock = await acquireLock(process.argv[1], { command: 'test-holder', staleSeconds: 600 });
         process.stdout.write('acquired\\n');
         process.stdin.resume();
         process.stdin.on('end', async () => { await lock.release(); process.exit(0); });`,
        dest,
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.on('data', (c: Buffer) => c.toString().includes('acquired') && resolve());
        holder.on('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
      });
      const isLock = (rel: string) => rel === '.pvc-backup.lock';
      const before = exactState(dest, isLock);
      const blocked = await backup(source, dest);
      expect(blocked.code).toBe(4);
      expect(failure(blocked.lines)?.msg).toMatch(/lock/i);
      expect(failure(blocked.lines)?.msg).toContain(String(holder.pid));
      expect(exactState(dest, isLock)).toBe(before);
    } finally {
      holder.stdin.end();
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    const after = await backup(source, dest);
    expect(after.code, after.stdout).toBe(0);
  });

  it('removes a leftover partial of a killed run with a warning, and leaves other hidden files alone', async () => {
    const { source, dest } = await sourceAndDest();
    const leftover = '.backup-20200101T000000Z.tar.gz.partial';
    fs.writeFileSync(path.join(dest, leftover), 'half an archive');
    fs.writeFileSync(path.join(dest, '.keep-me'), 'not ours');
    const result = await backup(source, dest);
    expect(result.code, result.stdout).toBe(0);
    const warning = result.lines.find((l) => l.event === 'backup.leftover-removed');
    expect(warning?.level).toBe('warn');
    expect(warning?.msg).toContain(leftover);
    expect(fs.existsSync(path.join(dest, leftover))).toBe(false);
    expect(fs.readFileSync(path.join(dest, '.keep-me'), 'utf8')).toBe('not ours');
  });
});

describe('progress reporting', () => {
  it('logs backup.progress lines on a run longer than the progress interval', async () => {
    const source = await tempDir('src');
    const dest = await tempDir('dest');
    // 128 MiB of random data at gzip level 9 takes several seconds on two cores.
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(source, `big-${i}.bin`), randomBytes(32 * 1024 * 1024));
    const started = Date.now();
    const result = await backup(source, dest, ['--level', '9', '--progress-interval', '1s']);
    const seconds = (Date.now() - started) / 1000;
    expect(result.code, result.stdout).toBe(0);
    const progress = result.lines.filter((l) => l.event === 'backup.progress');
    expect(progress.length, `no progress line in a ${seconds}s run`).toBeGreaterThanOrEqual(1);
    for (const line of progress) {
      expect(line.level).toBe('info');
      expect(line).toMatchObject({ bytes: expect.any(Number), files: expect.any(Number), bytesPerSecond: expect.any(Number) });
    }
    const done = result.lines.find((l) => l.event === 'backup.done')!;
    expect(progress.at(-1)!.bytes as number).toBeLessThanOrEqual(done.bytesIn as number);
    // Files are regular files (the directories are not counted), as in the done line.
    expect(progress.at(-1)!.files as number).toBeLessThanOrEqual(done.files as number);
  });
});

describe('--keep-last through backup', () => {
  it('leaves exactly the newest 2 archives, each with its sidecars, after 3 backups', async () => {
    const { source, dest } = await sourceAndDest();
    fs.writeFileSync(path.join(dest, 'unrelated.txt'), 'not an archive');
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const result = await backup(source, dest, ['--keep-last', '2']);
      expect(result.code, result.stdout).toBe(0);
      made.push(result.lines.find((l) => l.event === 'backup.done')!.archive as string);
    }
    const kept = made.slice(1);
    expect(fs.readdirSync(dest).sort()).toEqual(
      [...kept.flatMap((n) => [n, `${n}.sha256`, `${n}.manifest.json`]), 'unrelated.txt'].sort(),
    );
  });
});
