import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type LogLine, archivesIn, cliPath, jsonLines, runCli, shell, shq, tool } from '../helpers/cli.js';
import { useMounts } from '../helpers/mounts.js';
import { isRoot, makeDeepTree, rawSnapshot, useTempDirs, xattrDump } from '../helpers/tree.js';

/**
 * What an archive preserves, proven on real trees with real tools: names and link targets as
 * bytes, mtimes to the nanosecond (before 1970 too), xattrs / POSIX ACLs / file capabilities,
 * sparse files, paths longer than PATH_MAX. Each case goes three ways and must come back equal
 * field by field: pvc-backup → pvc-backup restore, pvc-backup → GNU tar extraction, and a GNU
 * tar archive (`--xattrs --acls --sparse --format=posix`) → pvc-backup restore.
 */

const tempDir = useTempDirs();
const mountFileSystem = useMounts();

interface Run {
  code: number | null;
  lines: LogLine[];
  stdout: string;
}

async function cli(args: string[], options: { uid?: number; gid?: number } = {}): Promise<Run> {
  const result = await runCli([...args, '--log-format', 'json'], options);
  return { code: result.code, lines: jsonLines(result.stdout), stdout: result.stdout + result.stderr };
}

async function backup(source: string, dest: string, extra: string[] = []): Promise<string> {
  const run = await cli(['backup', '--source', source, '--dest', dest, '--compression', 'zstd', ...extra]);
  expect(run.code, run.stdout).toBe(0);
  const warnings = run.lines.filter((l) => l.level === 'warn');
  expect(warnings, run.stdout).toEqual([]);
  const [name] = archivesIn(dest);
  return path.join(dest, name!);
}

async function restore(dest: string, archive: string, target: string, extra: string[] = [], options: { uid?: number; gid?: number } = {}): Promise<Run> {
  const run = await cli(['restore', '--dest', dest, '--archive', path.basename(archive), '--target', target, '--no-snapshot', ...extra], options);
  expect(run.code, run.stdout).toBe(0);
  return run;
}

async function verify(dest: string): Promise<void> {
  const run = await cli(['verify', '--dest', dest, '--latest']);
  expect(run.code, run.stdout).toBe(0);
}

/** GNU tar's own extraction of an archive (compression detected by tar). */
function gnuExtract(archive: string, into: string): void {
  tool('tar', ['--xattrs', "--xattrs-include=*", '--acls', '--numeric-owner', '-xpf', archive, '-C', into]);
}

/** A GNU tar archive of a tree, with everything GNU tar can keep, in a fresh DEST; restored with --allow-unverified. */
async function gnuArchive(source: string): Promise<{ dest: string; archive: string }> {
  const dest = await tempDir('gnu-dest');
  const archive = path.join(dest, 'gnu.tar');
  tool('tar', ['--xattrs', "--xattrs-include=*", '--acls', '--sparse', '--format=posix', '--numeric-owner', '-cf', archive, '-C', source, '.']);
  return { dest, archive };
}

/** A path below root whose last components are raw bytes. */
function bytesPath(root: string, ...parts: (string | number[])[]): Buffer {
  return Buffer.concat([Buffer.from(root), ...parts.flatMap((p) => [Buffer.from('/'), typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)])]);
}

/** Sets mtimes with touch (nanoseconds, before 1970); -h for symlinks. */
function touch(file: Buffer | string, date: string, symlink = false): void {
  execFileSync('touch', [...(symlink ? ['-h'] : []), '-d', date, typeof file === 'string' ? file : file.toString('latin1')], {
    // touch takes its argument as bytes: pass them through latin1 unchanged.
    env: { ...process.env, LC_ALL: 'C' },
  });
}

/** The three directions every case is checked in. */
async function roundTrips(source: string, options: { extra?: string[]; xattrs?: boolean; gnuExtracts?: boolean } = {}): Promise<void> {
  const expected = rawSnapshot(source);
  const expectedXattrs = options.xattrs ? xattrDump(source) : undefined;

  const dest = await tempDir('dest');
  const archive = await backup(source, dest, options.extra);
  await verify(dest);

  const ours = await tempDir('ours');
  await restore(dest, archive, ours);
  expect(rawSnapshot(ours), 'pvc-backup restore of a pvc-backup archive').toEqual(expected);
  if (expectedXattrs !== undefined) expect(xattrDump(ours)).toBe(expectedXattrs);

  if (options.gnuExtracts !== false) {
    const gnu = await tempDir('gnu');
    gnuExtract(archive, gnu);
    expect(rawSnapshot(gnu), 'GNU tar extraction of a pvc-backup archive').toEqual(expected);
    if (expectedXattrs !== undefined) expect(xattrDump(gnu)).toBe(expectedXattrs);
  }

  const fromGnu = await gnuArchive(source);
  const theirs = await tempDir('theirs');
  await restore(fromGnu.dest, fromGnu.archive, theirs, ['--allow-unverified']);
  expect(rawSnapshot(theirs), 'pvc-backup restore of a GNU tar archive').toEqual(expected);
  if (expectedXattrs !== undefined) expect(xattrDump(theirs)).toBe(expectedXattrs);
}

describe('names and link targets are bytes', () => {
  it('keeps names that are not UTF-8 apart and exact, in directories too, and symlink targets byte for byte', async () => {
    const source = await tempDir('names');
    fs.writeFileSync(bytesPath(source, [0x61, 0xff]), '1\n');
    fs.mkdirSync(bytesPath(source, [0x64, 0x69, 0x72, 0xe9]));
    fs.writeFileSync(bytesPath(source, [0x64, 0x69, 0x72, 0xe9], 'f'), '2\n');
    // U+FFFD itself, and two different invalid bytes that Node alone would all turn into U+FFFD.
    fs.writeFileSync(bytesPath(source, [0x78, 0xef, 0xbf, 0xbd]), 'three\n');
    fs.writeFileSync(bytesPath(source, [0x78, 0xff]), 'four\n');
    fs.writeFileSync(bytesPath(source, [0x78, 0xfe]), 'five\n');
    fs.symlinkSync(Buffer.from([0x74, 0xfe, 0x80, 0x2f, 0x78]), bytesPath(source, 'link'));
    fs.linkSync(bytesPath(source, [0x61, 0xff]), bytesPath(source, [0x68, 0xc3]));
    fs.writeFileSync(path.join(source, 'ünïcødé-😀.txt'), 'utf-8\n');

    const dest = await tempDir('dest');
    const archive = await backup(source, dest);
    const manifestText = fs.readFileSync(`${archive}.manifest.json`, 'utf8');
    // The manifest records the bytes losslessly: byte 0xXY that is not UTF-8 as \udcXY.
    expect(manifestText).toContain('"path":"./a\\udcff"');
    expect(manifestText).toContain('"path":"./dir\\udce9/f"');
    expect(manifestText).toContain('"linkTarget":"t\\udcfe\\udc80/x"');
    const manifest = JSON.parse(manifestText) as { files: { path: string }[]; entryCount: number };
    expect(manifest.files.map((f) => f.path)).toContain('./x\ufffd');
    expect(manifest.entryCount).toBe(10);
    // GNU tar lists the same bytes.
    const listed = tool('tar', ['--quoting-style=literal', '-tf', archive]);
    const names: string[] = [];
    for (let at = 0; at < listed.length; ) {
      const end = listed.indexOf(0x0a, at);
      names.push(listed.subarray(at, end).toString('hex'));
      at = end + 1;
    }
    const hex = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))).toString('hex');
    expect(names).toEqual(
      expect.arrayContaining([hex('./a', [0xff]), hex('./dir', [0xe9], '/'), hex('./dir', [0xe9], '/f'), hex('./x', [0xef, 0xbf, 0xbd]), hex('./x', [0xff]), hex('./x', [0xfe]), hex('./h', [0xc3])]),
    );
    await roundTrips(source);
  });
});

describe('names that are not UTF-8 on the command line', () => {
  // Node turns argv bytes that are not UTF-8 into U+FFFD; the runner takes them from
  // /proc/self/cmdline (across its own re-exec too), so such files can be named as typed.
  it('cat and restore --path take them as typed in a shell, byte for byte', async () => {
    const source = await tempDir('names');
    fs.mkdirSync(bytesPath(source, [0x63, 0x61, 0x66, 0xe9]));
    fs.writeFileSync(bytesPath(source, [0x63, 0x61, 0x66, 0xe9], 'menu.txt'), 'soup\n');
    fs.writeFileSync(bytesPath(source, [0x78, 0xff]), 'the one with 0xff\n');
    fs.writeFileSync(bytesPath(source, [0x78, 0xfe]), 'the one with 0xfe\n');
    const dest = await tempDir('dest');
    await backup(source, dest);
    const runner = `${shq(process.execPath)} ${shq(cliPath)}`;
    expect(shell(`${runner} cat --dest ${shq(dest)} latest "$(printf './x\\377')"`).toString()).toBe('the one with 0xff\n');
    expect(shell(`${runner} cat --dest ${shq(dest)} latest "$(printf './x\\376')"`).toString()).toBe('the one with 0xfe\n');

    const target = await tempDir('target');
    shell(`${runner} restore --dest ${shq(dest)} --archive latest --target ${shq(target)} --path "$(printf './caf\\351')" --no-snapshot`);
    expect(rawSnapshot(target).map((e) => e.path)).toEqual(rawSnapshot(source).map((e) => e.path).filter((p) => p === '2e' || p.startsWith(Buffer.from('./caf\xe9', 'latin1').toString('hex'))));

    const missing = spawnSync('sh', ['-c', `${runner} cat --dest ${shq(dest)} latest "$(printf './nothere\\377')"`]);
    expect(missing.status).toBe(2);
    expect(missing.stderr.toString()).toContain('./nothere\\xff is not in');
  });
});

describe('mtimes are exact', () => {
  it('keeps nanoseconds, times before 1970 and after 2038, on files, directories and symlinks', async () => {
    const source = await tempDir('times');
    const cases: [string, string][] = [
      ['before-1970', '1960-01-01 00:00:00.5 UTC'],
      ['just-before-epoch', '1969-12-31 23:59:59.999999999 UTC'],
      ['nines', '2020-01-01 00:00:00.999999999 UTC'],
      ['nanoseconds', '2021-03-04 05:06:07.123456789 UTC'],
      ['after-2038', '2100-06-07 08:09:10.000000001 UTC'],
      ['whole-second', '2001-09-09 01:46:40 UTC'],
    ];
    for (const [name] of cases) fs.writeFileSync(path.join(source, name), `${name}\n`);
    fs.mkdirSync(path.join(source, 'dir'));
    fs.symlinkSync('nines', path.join(source, 'link'));
    for (const [name, date] of cases) touch(path.join(source, name), date);
    touch(path.join(source, 'link'), '1965-05-05 05:05:05.050505050 UTC', true);
    touch(path.join(source, 'dir'), '1999-12-31 23:59:59.987654321 UTC');
    touch(source, '2010-10-10 10:10:10.101010101 UTC');
    const st = fs.statSync(path.join(source, 'before-1970'), { bigint: true });
    expect(st.mtimeNs).toBe(-315619199500000000n);
    await roundTrips(source);
  });
});

describe.skipIf(!isRoot)('extended attributes, POSIX ACLs and file capabilities (root)', () => {
  async function attributeTree(): Promise<string> {
    const source = await tempDir('xattrs');
    const file = (name: string, content = `${name}\n`) => {
      const p = path.join(source, name);
      fs.writeFileSync(p, content);
      return p;
    };
    const plain = file('user-xattrs');
    tool('setfattr', ['-n', 'user.comment', '-v', 'hello world', plain]);
    tool('setfattr', ['-n', 'user.binary', '-v', '0x00ff10fe', plain]);
    tool('setfattr', ['-n', 'trusted.origin', '-v', 'restored-as-root', plain]);
    // The case that widened access when the ACL was lost: the group bits show the mask (rwx), not group::r--.
    const acl = file('acl-file');
    fs.chmodSync(acl, 0o640);
    tool('setfacl', ['-m', 'u:1234:rwx,g:55:r--,m::rwx', acl]);
    expect(tool('stat', ['-c', '%A', acl]).toString().trim()).toBe('-rw-rwx---');
    const dir = path.join(source, 'shared');
    fs.mkdirSync(dir);
    tool('setfacl', ['-m', 'g:4321:rwx', dir]);
    tool('setfacl', ['-d', '-m', 'u:1001:rx,g:4321:rwx', dir]);
    fs.writeFileSync(path.join(dir, 'inherited'), 'gets the default ACL\n');
    const cap = file('ping-like');
    fs.chmodSync(cap, 0o755);
    tool('setcap', ['cap_net_raw,cap_net_bind_service+ep', cap]);
    // A read-only file with a user xattr: set while still writable, then the mode.
    const readonly = file('readonly');
    tool('setfattr', ['-n', 'user.note', '-v', 'read only', readonly]);
    fs.chmodSync(readonly, 0o444);
    return source;
  }

  it('round-trips xattrs, access and default ACLs and capabilities the way GNU tar --xattrs --acls stores them', async () => {
    const source = await attributeTree();
    await roundTrips(source, { xattrs: true });
    // The archive holds GNU tar's records: SCHILY.xattr.* and the ACLs as text too.
    const dest = await tempDir('dest');
    const archive = await backup(source, dest);
    const raw = execFileSync('sh', ['-c', `zstd -dc '${archive}' | strings`]).toString();
    expect(raw).toContain('SCHILY.xattr.user.comment=hello world');
    expect(raw).toMatch(/SCHILY\.acl\.access=user::rw-\nuser:1234:rwx\ngroup::r--\ngroup:55:r--\nmask::rwx\nother::---\n/);
    expect(raw).toContain('SCHILY.acl.default=');
    expect(raw).toContain('SCHILY.xattr.security.capability=');
    const listed = tool('tar', ['--acls', '-tvf', archive]).toString();
    expect(listed).toMatch(/-rw-rwx---\+ 0\/0 .* \.\/acl-file/);
  });

  // A target whose directory has a default ACL (set by an admin or a provisioner) passed it on to
  // every restored entry: a 0640 file without an ACL became readable by the default ACL's user.
  // GNU tar --acls removes what the archive does not give an entry; so does restore.
  it('gives no entry an ACL the archive does not have, in a target with default ACLs (replace and merge), as tar --acls -x', async () => {
    const source = await attributeTree();
    fs.writeFileSync(path.join(source, 'private'), 'owner and group only\n', { mode: 0o640 });
    fs.mkdirSync(path.join(source, 'plain-dir/nested'), { recursive: true });
    fs.writeFileSync(path.join(source, 'plain-dir/nested/private'), 'owner and group only\n', { mode: 0o640 });
    fs.writeFileSync(path.join(source, 'shared/acl-removed'), 'no ACL of its own\n', { mode: 0o640 });
    tool('setfacl', ['-b', path.join(source, 'shared/acl-removed')]);
    const dest = await tempDir('dest');
    const archive = await backup(source, dest);
    const withDefaultAcl = (dir: string) => tool('setfacl', ['-m', 'u:65534:rx', '-d', '-m', 'u:65534:rwx', dir]);

    const target = await tempDir('target');
    withDefaultAcl(target);
    await restore(dest, archive, target);
    const byTar = await tempDir('tar');
    withDefaultAcl(byTar);
    gnuExtract(archive, byTar);
    expect(xattrDump(target)).toBe(xattrDump(byTar));
    expect(xattrDump(target)).toBe(xattrDump(source));
    expect(rawSnapshot(target)).toEqual(rawSnapshot(source));
    const asNobody = (file: string) => execFileSync('su', ['-s', '/bin/sh', 'nobody', '-c', `cat ${file} 2>&1 || true`]).toString();
    expect(asNobody(path.join(target, 'plain-dir/nested/private'))).toMatch(/Permission denied/);

    // Merge over a live tree whose directories already carry default ACLs, with a file of its own.
    const live = await tempDir('live');
    fs.mkdirSync(path.join(live, 'plain-dir'));
    fs.writeFileSync(path.join(live, 'plain-dir/not-in-archive'), 'stays, with its ACL\n');
    for (const dir of [live, path.join(live, 'plain-dir')]) withDefaultAcl(dir);
    tool('setfacl', ['-m', 'u:65534:r', path.join(live, 'plain-dir/not-in-archive')]);
    const liveByTar = await tempDir('live-tar');
    tool('cp', ['-a', `${live}/.`, liveByTar]);
    await restore(dest, archive, live, ['--mode', 'merge']);
    gnuExtract(archive, liveByTar);
    // The target directory's own ACLs are left as they are by a merge (GNU tar also applies the archive's root entry).
    const belowRoot = (dir: string) => xattrDump(dir).split('\n\n').filter((block) => !block.startsWith('# file: .\n')).join('\n\n');
    expect(belowRoot(live)).toBe(belowRoot(liveByTar));
    expect(belowRoot(live)).toContain('# file: plain-dir/not-in-archive');
    expect(asNobody(path.join(live, 'plain-dir/nested/private'))).toMatch(/Permission denied/);
  });

  it('--no-xattrs leaves them out of the archive, and restore --no-xattrs does not set them', async () => {
    const source = await attributeTree();
    const dest = await tempDir('dest');
    const archive = await backup(source, dest, ['--no-xattrs']);
    expect(fs.readFileSync(`${archive}.manifest.json`, 'utf8')).not.toContain('"xattrs":{');
    const target = await tempDir('target');
    await restore(dest, archive, target);
    expect(xattrDump(target)).toBe('');

    const dest2 = await tempDir('dest');
    const withXattrs = await backup(source, dest2);
    const target2 = await tempDir('target');
    await restore(dest2, withXattrs, target2, ['--no-xattrs']);
    expect(xattrDump(target2)).toBe('');
  });

  it('names every file whose attributes the target file system cannot hold, and restores everything else', async () => {
    const source = await attributeTree();
    const dest = await tempDir('dest');
    const archive = await backup(source, dest);
    // ramfs has no extended attributes at all.
    const target = await tempDir('ramfs');
    mountFileSystem('ramfs', target);
    const run = await restore(dest, archive, target);
    const warned = run.lines.filter((l) => l.event === 'restore.attribute').map((l) => l.path as string);
    expect(new Set(warned)).toEqual(new Set(['./user-xattrs', './acl-file', './shared/', './shared/inherited', './ping-like', './readonly']));
    expect(run.lines.find((l) => l.event === 'restore.attribute')!.msg).toMatch(/does not support it/);
    // Without its ACL a file must not grant its group more than the ACL did: group::r-- under mask::rwx.
    const modeOf = (name: string) => (fs.statSync(path.join(target, name)).mode & 0o7777).toString(8);
    expect(modeOf('acl-file')).toBe('640');
    expect(modeOf('shared')).toBe('755');
    const withoutAclModes = (entries: ReturnType<typeof rawSnapshot>) => entries.map((e) => ({ ...e, mode: /^2e2f(61636c2d66696c65|736861726564)/.test(e.path) ? '' : e.mode }));
    expect(withoutAclModes(rawSnapshot(target))).toEqual(withoutAclModes(rawSnapshot(source)));
  });

  it('as another user restores user.* xattrs and names the attributes it may not set', async () => {
    const source = await attributeTree();
    const dest = await tempDir('dest');
    const archive = await backup(source, dest);
    fs.chmodSync(dest, 0o777);
    const target = await tempDir('target');
    fs.chownSync(target, 65534, 65534);
    const run = await restore(dest, archive, target, [], { uid: 65534, gid: 65534 });
    const xattrs = xattrDump(target);
    expect(xattrs).toContain('user.comment=0x68656c6c6f20776f726c64');
    expect(xattrs).toContain('user.note=');
    expect(xattrs).not.toContain('trusted.origin');
    expect(fs.statSync(path.join(target, 'readonly')).mode & 0o777).toBe(0o444);
    const problems = run.lines.filter((l) => l.event === 'restore.attribute').map((l) => `${l.path as string} ${l.problem as string}`);
    expect(problems.some((p) => p.startsWith('./user-xattrs') && p.includes('trusted.origin'))).toBe(true);
    expect(problems.some((p) => p.startsWith('./ping-like') && p.includes('security.capability'))).toBe(true);
  });
});

describe('sparse files', () => {
  it('stores only the data, restores the holes, and counts allocated bytes in the free-space checks', async () => {
    const source = await tempDir('sparse');
    const big = path.join(source, 'vm.img');
    const fd = fs.openSync(big, 'w');
    fs.writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 0);
    fs.writeSync(fd, Buffer.alloc(1024 * 1024, 2), 0, 1024 * 1024, 32 * 1024 * 1024);
    fs.writeSync(fd, Buffer.from('tail'), 0, 4, 50 * 1024 * 1024);
    fs.ftruncateSync(fd, 96 * 1024 * 1024);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(source, 'holes-only'), '');
    fs.truncateSync(path.join(source, 'holes-only'), 10 * 1024 * 1024);
    fs.writeFileSync(path.join(source, 'dense'), Buffer.alloc(64 * 1024, 7));
    const allocated = (file: string) => fs.statSync(file).blocks;
    const sourceBlocks = allocated(big);
    expect(sourceBlocks * 512).toBeLessThan(2 * 1024 * 1024);

    await roundTrips(source);

    if (!isRoot) return;
    // A 16 MiB backup volume takes the archive of a 106 MiB (apparent) tree; a 24 MiB target takes the restore.
    const dest = await tempDir('small-dest');
    mountFileSystem('tmpfs', dest, 'size=16m,mode=0755');
    const archive = await backup(source, dest, ['--compression', 'none']);
    const manifest = JSON.parse(fs.readFileSync(`${archive}.manifest.json`, 'utf8')) as { files: { path: string; dataBytes?: number; sha256?: string }[]; storedBytes: number; totalBytes: number };
    const entry = manifest.files.find((f) => f.path === './vm.img')!;
    expect(entry.dataBytes).toBeLessThan(2 * 1024 * 1024);
    expect(entry.sha256).toBe(createHash('sha256').update(fs.readFileSync(big)).digest('hex'));
    expect(manifest.totalBytes).toBe(106 * 1024 * 1024 + 64 * 1024);
    const target = await tempDir('small-target');
    mountFileSystem('tmpfs', target, 'size=24m,mode=0755');
    await restore(dest, archive, target);
    const restored = path.join(target, 'vm.img');
    expect(allocated(restored)).toBeLessThanOrEqual(sourceBlocks + 16);
    expect(allocated(path.join(target, 'holes-only'))).toBe(0);
    expect(createHash('sha256').update(fs.readFileSync(restored)).digest('hex')).toBe(entry.sha256);
    // GNU tar keeps the holes of our archive too.
    const gnu = await tempDir('gnu');
    gnuExtract(archive, gnu);
    expect(allocated(path.join(gnu, 'vm.img'))).toBeLessThanOrEqual(sourceBlocks + 16);
  });
});

describe('paths longer than PATH_MAX', () => {
  it('backs up and restores (replace and merge) a tree deeper than 4096 bytes, as GNU tar does', async () => {
    const source = await tempDir('deep');
    const components = makeDeepTree(source, 5000);
    expect(components.join('/').length).toBeGreaterThan(5000);
    fs.writeFileSync(path.join(source, 'shallow.txt'), 'near the top\n');
    // GNU tar 1.34 archives such a tree but cannot extract it ("Cannot mkdir: File name too long"):
    // only its archive is restored here, by pvc-backup.
    await roundTrips(source, { gnuExtracts: false });

    // merge into a target that already holds part of the deep chain
    const dest = await tempDir('dest');
    const archive = await backup(source, dest);
    const target = await tempDir('merge');
    makeDeepTree(target, 2500, 'old\n');
    await restore(dest, archive, target, ['--mode', 'merge']);
    const leaf = execFileSync('bash', ['-c', `cd "$1" && shift && for c in "$@"; do cd "$c"; done && cat leaf.txt`, 'x', target, ...components]).toString();
    expect(leaf).toBe('deep\n');
  });
});
