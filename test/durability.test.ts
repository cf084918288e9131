import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { archivesIn, cleanEnv, cliPath, runCli } from './helpers/cli.js';
import { buildRichTree, useTempDirs } from './helpers/tree.js';

/**
 * Durability order, seen in the system calls of real runs (strace -f): every file that gets a
 * final name in the backup directory (the archive, its .sha256 and manifest, a restore's journal
 * and done marker, a verify's rewritten manifest) is fsynced under its hidden name BEFORE the
 * rename that gives it its name, and the directory is fsynced after the rename; the archive is
 * renamed last, after its sidecars; a replace restore syncs the staged tree before its journal
 * commits to the swap. Kills and ENOSPC keep the page cache, so no other test notices a missing
 * fsync: this one fails as soon as one is removed or moved after its rename.
 */

const tempDir = useTempDirs();
const hasStrace = (() => {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

interface Call {
  name: string;
  /** fsync/fdatasync/syncfs: the path of the descriptor; rename: [from, to]. */
  paths: string[];
  ok: boolean;
}

/** Runs the CLI under strace and returns the calls that matter for durability, in order. */
function traced(args: string[]): { calls: Call[]; code: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-strace-'));
  const out = path.join(dir, 'trace');
  let code = 0;
  try {
    execFileSync('strace', ['-f', '-y', '-qq', '-s', '4096', '-e', 'trace=fsync,fdatasync,syncfs,rename,renameat,renameat2', '-o', out, process.execPath, cliPath, ...args], {
      env: cleanEnv(),
      stdio: 'ignore',
    });
  } catch (error) {
    code = (error as { status?: number }).status ?? 1;
  }
  const text = fs.readFileSync(out, 'utf8');
  fs.rmSync(dir, { recursive: true, force: true });
  const calls: Call[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+\s+(fsync|fdatasync|syncfs|rename|renameat|renameat2)\((.*)\)\s+=\s+(-?\d+)/.exec(line);
    if (!m) continue;
    const [, name, rawArgs, result] = m;
    const paths = name!.startsWith('rename') ? [...rawArgs!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]!) : [/<(.*)>/.exec(rawArgs!)?.[1] ?? ''];
    calls.push({ name: name!, paths, ok: result === '0' });
  }
  return { calls, code };
}

/** Index of the first call matching, or -1. */
function find(calls: Call[], match: (c: Call) => boolean, from = 0): number {
  for (let i = from; i < calls.length; i++) if (match(calls[i]!)) return i;
  return -1;
}

const isSync = (c: Call, file: string) => (c.name === 'fsync' || c.name === 'fdatasync') && c.ok && c.paths[0] === file;
const isRename = (c: Call, from: string, to: string) => c.name.startsWith('rename') && c.ok && c.paths[0] === from && c.paths[1] === to;

/** Asserts: `partial` is fsynced, then renamed to `final`, then `dir` is fsynced; returns the rename's index. */
function expectDurableRename(calls: Call[], dir: string, partialName: string, finalName: string): number {
  const partial = path.join(dir, partialName);
  const final = path.join(dir, finalName);
  const renamed = find(calls, (c) => isRename(c, partial, final));
  expect(renamed, `rename ${partialName} -> ${finalName}`).toBeGreaterThan(-1);
  const synced = find(calls, (c) => isSync(c, partial));
  expect(synced, `fsync of ${partialName}`).toBeGreaterThan(-1);
  expect(synced, `fsync of ${partialName} before its rename`).toBeLessThan(renamed);
  expect(find(calls, (c) => isSync(c, dir), renamed), `fsync of ${dir} after the rename of ${finalName}`).toBeGreaterThan(renamed);
  return renamed;
}

describe.skipIf(!hasStrace)('durability order (strace)', () => {
  it('backup: archive, .sha256 and manifest each fsynced before their rename, the directory after, the archive last', async () => {
    const source = await tempDir('src');
    buildRichTree(source, { bigFileBytes: 100_000 });
    for (const compression of ['zstd', 'gzip', 'none']) {
      const dest = fs.realpathSync(await tempDir('dest'));
      const { calls, code } = traced(['backup', '--source', source, '--dest', dest, '--compression', compression]);
      expect(code).toBe(0);
      const [name] = archivesIn(dest);
      const archive = expectDurableRename(calls, dest, `.${name}.partial`, name!);
      const checksum = expectDurableRename(calls, dest, `.${name}.sha256.partial`, `${name}.sha256`);
      const manifest = expectDurableRename(calls, dest, `.${name}.manifest.json.partial`, `${name}.manifest.json`);
      expect(checksum, 'the .sha256 is in place before the archive gets its name').toBeLessThan(archive);
      expect(manifest, 'the manifest is in place before the archive gets its name').toBeLessThan(archive);
    }
  });

  it('verify: the manifest rewritten with its verification record is fsynced before its rename', async () => {
    const source = await tempDir('src');
    fs.writeFileSync(path.join(source, 'a.txt'), 'a\n');
    const dest = fs.realpathSync(await tempDir('dest'));
    expect((await runCli(['backup', '--source', source, '--dest', dest])).code).toBe(0);
    const [name] = archivesIn(dest);
    const { calls, code } = traced(['verify', '--dest', dest, '--latest']);
    expect(code).toBe(0);
    expectDurableRename(calls, dest, `.${name}.manifest.json.partial`, `${name}.manifest.json`);
  });

  it('restore: the staged tree is synced before the journal commits to the swap, the journal and the done marker fsynced before their renames', async () => {
    const source = await tempDir('src');
    buildRichTree(source, { bigFileBytes: 100_000 });
    const dest = fs.realpathSync(await tempDir('dest'));
    expect((await runCli(['backup', '--source', source, '--dest', dest, '--compression', 'zstd'])).code).toBe(0);
    const target = fs.realpathSync(await tempDir('target'));
    fs.writeFileSync(path.join(target, 'old.txt'), 'old\n');
    const { calls, code } = traced(['restore', '--dest', dest, '--archive', 'latest', '--target', target, '--no-snapshot', '--request-id', 'r1']);
    expect(code).toBe(0);
    const journalRename = find(calls, (c) => c.name.startsWith('rename') && c.ok && /\.pvc-backup-restore-[0-9a-f]+\.journal\.tmp$/.test(c.paths[0]!));
    expect(journalRename, 'the journal is written').toBeGreaterThan(-1);
    const journalTmp = calls[journalRename]!.paths[0]!;
    const journal = calls[journalRename]!.paths[1]!;
    expectDurableRename(calls, target, path.basename(journalTmp), path.basename(journal));
    // sync -f (syncfs on the target's file system), or a global sync, before the journal exists.
    const synced = find(calls, (c) => c.name === 'syncfs' && c.ok);
    expect(synced, 'syncfs of the target file system').toBeGreaterThan(-1);
    expect(synced, 'staged data synced before the journal commits to the swap').toBeLessThan(journalRename);
    expectDurableRename(calls, dest, '..pvc-backup-restore-r1.done.partial', '.pvc-backup-restore-r1.done');
  });
});
