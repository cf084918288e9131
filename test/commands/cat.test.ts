import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ageKeygen } from '../helpers/age.js';
import { jsonLines, runCli } from '../helpers/cli.js';
import { useTempDirs, writeTree } from '../helpers/tree.js';

/** `pvc-backup cat ARCHIVE PATH`: exactly the file's bytes on stdout, after they matched the manifest; nothing on stdout otherwise. */

const tempDir = useTempDirs();

/** Text that zstd cannot shrink much (hex of random bytes), so a few MiB span several frames. */
const noise = (bytes: number) => randomBytes(bytes / 2).toString('hex');

async function backedUp(compression: 'gzip' | 'zstd' | 'none', extra: string[] = []) {
  const source = await tempDir('src');
  const dest = await tempDir('dest');
  writeTree(source, {
    'etc/app.conf': 'archived config\n',
    'big/1.txt': noise(3 * 1024 * 1024),
    'big/2.txt': noise(3 * 1024 * 1024),
    'big/3.txt': noise(3 * 1024 * 1024),
    'big/4.txt': noise(3 * 1024 * 1024),
    'zz/last.txt': 'the last file\n',
  });
  fs.linkSync(path.join(source, 'big/2.txt'), path.join(source, 'hard.txt'));
  const backup = await runCli(['backup', '--source', source, '--dest', dest, '--compression', compression, ...extra]);
  expect(backup.code, backup.stdout + backup.stderr).toBe(0);
  const archive = fs.readdirSync(dest).find((n) => /\.tar(\.gz|\.zst)?(\.age)?$/.test(n))!;
  return { source, dest, archive };
}

async function cat(args: string[]) {
  const result = await runCli(['cat', ...args, '--log-format', 'json']);
  return { ...result, lines: result.stderr.trim() === '' ? [] : jsonLines(result.stderr) };
}

describe('cat', () => {
  it('writes one file (a hard link too) to stdout with log lines on stderr', async () => {
    const { source, dest, archive } = await backedUp('gzip');
    const conf = await cat(['--dest', dest, 'latest', './etc/app.conf']);
    expect(conf.code, conf.stderr).toBe(0);
    expect(conf.stdout).toBe('archived config\n');
    expect(conf.lines.find((l) => l.event === 'cat.checked')).toMatchObject({ path: './etc/app.conf', seeked: false });
    const big = await cat(['--dest', dest, archive, 'big/3.txt']);
    expect(big.code, big.stderr).toBe(0);
    expect(big.stdout).toBe(fs.readFileSync(path.join(source, 'big/3.txt'), 'utf8'));
    const hard = await cat(['--dest', dest, archive, 'hard.txt']);
    expect(hard.code, hard.stderr).toBe(0);
    expect(hard.stdout).toBe(fs.readFileSync(path.join(source, 'big/2.txt'), 'utf8'));
  });

  it('zstd: starts decoding at the frame that holds the file, and reads only a small part of the archive', async () => {
    const { source, dest, archive } = await backedUp('zstd');
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, `${archive}.manifest.json`), 'utf8')) as { frames: [number, number][]; archiveBytes: number };
    expect(manifest.frames.length).toBeGreaterThan(4);
    const last = await cat(['--dest', dest, 'latest', 'zz/last.txt']);
    expect(last.code, last.stderr).toBe(0);
    expect(last.stdout).toBe('the last file\n');
    const seek = last.lines.find((l) => l.event === 'cat.seek')!;
    expect(seek.frame).toBeGreaterThanOrEqual(manifest.frames.length - 2);
    const checked = last.lines.find((l) => l.event === 'cat.checked')!;
    expect(checked.seeked).toBe(true);
    expect(checked.archiveBytesRead as number).toBeLessThan(manifest.archiveBytes / 3);

    const middle = await cat(['--dest', dest, archive, './big/2.txt']);
    expect(middle.code, middle.stderr).toBe(0);
    expect(middle.stdout).toBe(fs.readFileSync(path.join(source, 'big/2.txt'), 'utf8'));
    expect(middle.lines.find((l) => l.event === 'cat.seek')!.frame).toBeGreaterThan(0);
  });

  it('a format-2 manifest without per-entry offsets still works, decoding from the start', async () => {
    const { source, dest, archive } = await backedUp('zstd');
    const manifestFile = path.join(dest, `${archive}.manifest.json`);
    const text = fs.readFileSync(manifestFile, 'utf8');
    expect(text).toMatch(/,"offset":\d+/);
    fs.writeFileSync(manifestFile, text.replace(/,"offset":\d+/g, ''));
    const run = await cat(['--dest', dest, archive, 'big/4.txt']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(fs.readFileSync(path.join(source, 'big/4.txt'), 'utf8'));
    expect(run.lines.some((l) => l.event === 'cat.seek')).toBe(false);
    expect(run.lines.find((l) => l.event === 'cat.checked')!.seeked).toBe(false);
  });

  it('a file whose bytes no longer match the manifest: exit 3 and nothing on stdout', async () => {
    const { dest, archive } = await backedUp('none');
    const file = path.join(dest, archive);
    const bytes = fs.readFileSync(file);
    const at = bytes.indexOf('archived config');
    expect(at).toBeGreaterThan(0);
    bytes[at] = 'A'.charCodeAt(0);
    fs.writeFileSync(file, bytes);
    const run = await cat(['--dest', dest, archive, 'etc/app.conf']);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('SHA-256');
  });

  it('a damaged zstd frame: exit 3 and nothing on stdout', async () => {
    const { dest, archive } = await backedUp('zstd');
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, `${archive}.manifest.json`), 'utf8')) as { frames: [number, number][] };
    const file = path.join(dest, archive);
    const bytes = fs.readFileSync(file);
    // Inside the last frame, where zz/last.txt is.
    const start = manifest.frames.at(-1)![0];
    bytes[start + Math.floor((bytes.length - start) / 2)]! ^= 0xff;
    fs.writeFileSync(file, bytes);
    const run = await cat(['--dest', dest, archive, 'zz/last.txt']);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stdout).toBe('');
  });

  it('a path not in the archive, a directory, or no PATH: exit 2 and nothing on stdout', async () => {
    const { dest } = await backedUp('gzip');
    const missing = await cat(['--dest', dest, 'latest', 'etc/missing.conf']);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toContain('./etc/missing.conf is not in');
    const dir = await cat(['--dest', dest, 'latest', 'etc']);
    expect(dir.code).toBe(2);
    expect(dir.stderr).toContain('is a directory');
    const none = await runCli(['cat', '--dest', dest, 'latest']);
    expect(none.code).toBe(2);
    expect(none.stdout).toBe('');
  });

  it('an encrypted archive needs --age-identity-file, and is then read like any other', async () => {
    const key = ageKeygen();
    const { dest } = await backedUp('zstd', ['--age-recipient', key.recipient]);
    const keys = await tempDir('keys');
    const identityFile = path.join(keys, 'key.txt');
    fs.writeFileSync(identityFile, key.file, { mode: 0o600 });
    const without = await cat(['--dest', dest, 'latest', 'etc/app.conf']);
    expect(without.code).toBe(2);
    expect(without.stdout).toBe('');
    const run = await cat(['--dest', dest, 'latest', 'zz/last.txt', '--age-identity-file', identityFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('the last file\n');
  });
});
