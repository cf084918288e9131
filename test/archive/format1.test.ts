import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openManifest } from '../../runner/archive/manifest.js';
import { jsonLines, repoRoot, runCli } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';

/**
 * Archives made before manifest format 2 (these fixtures were written by the runner as it was
 * then: whole-second mtimes, format 1 manifests) still verify and restore, and verify keeps
 * their manifest readable when it records its result.
 */

const tempDir = useTempDirs();
const FIXTURES = path.join(repoRoot, 'test/fixtures/format1');

async function fixtureDest(): Promise<string> {
  const dest = await tempDir('format1');
  for (const name of fs.readdirSync(FIXTURES)) fs.copyFileSync(path.join(FIXTURES, name), path.join(dest, name));
  return dest;
}

describe('a format 1 archive', () => {
  it('verifies (gzip and zstd), and its manifest stays format 1 with the new verification record', async () => {
    const dest = await fixtureDest();
    const run = await runCli(['verify', '--dest', dest, '--prefix', 'format1', '--all', '--log-format', 'json']);
    expect(run.code, run.stdout).toBe(0);
    expect(jsonLines(run.stdout).filter((l) => l.event === 'verify.ok')).toHaveLength(2);
    for (const name of fs.readdirSync(dest).filter((n) => n.endsWith('.manifest.json'))) {
      const opened = openManifest(path.join(dest, name));
      expect(opened.manifest.format).toBe(1);
      expect(opened.manifest.verification?.ok).toBe(true);
      expect(JSON.parse(fs.readFileSync(path.join(dest, name), 'utf8')).files).toHaveLength(7);
    }
  });

  it('restores exactly what it holds', async () => {
    const dest = await fixtureDest();
    for (const name of fs.readdirSync(dest).filter((n) => /\.tar(\.gz|\.zst)$/.test(n))) {
      const target = await tempDir('target');
      const run = await runCli(['restore', '--dest', dest, '--archive', name, '--target', target, '--no-snapshot']);
      expect(run.code, run.stdout).toBe(0);
      expect(fs.readFileSync(path.join(target, 'a.txt'), 'utf8')).toBe('hello\n');
      expect(fs.readFileSync(path.join(target, 'sub/b.txt'), 'utf8')).toBe('world\n');
      expect(fs.statSync(path.join(target, 'sub/b.txt')).mode & 0o7777).toBe(0o640);
      expect(fs.readlinkSync(path.join(target, 'link'))).toBe('a.txt');
      expect(fs.statSync(path.join(target, 'hard.txt')).ino).toBe(fs.statSync(path.join(target, 'a.txt')).ino);
      expect(fs.statSync(path.join(target, 'empty')).isDirectory()).toBe(true);
      expect(fs.statSync(path.join(target, 'a.txt'), { bigint: true }).mtimeNs).toBe(1_588_748_889_000_000_000n);
      expect(fs.statSync(target).mtimeMs).toBe(1_588_748_889_000);
    }
  });
});
