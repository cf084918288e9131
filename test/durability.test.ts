import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { archivesIn, cleanEnv, cliPath, hasStrace, runCli } from './helpers/cli.js';
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
    execFileSync('strace', ['-f', '-y', '-qq', '-s', '4096', '-e', 'trace=fsync,fdatasync,syncfs,rename,renameat,renameat2,rmdir,unlink', '-o', out, process.execPath, cliPath, ...args], {
      env: cleanEnv(),
      stdio: 'ignore',
    });
  } catch (error) {
    code = (error as { status?: number }).status ?? 1;
  }
  const text = fs.readFileSync(out, 'utf8');
  fs.rmSync(dir, { recursive: true, force: true });
  const calls: Call[] = [];
  // With several threads and processes, strace splits a call that another one interrupts into
  // `PID call(args <unfinished ...>` and later `PID <... call resumed>) = R`; join them back.
  const pending = new Map<string, string>();
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    const unfinished = /^(\d+)\s+(.*) <unfinished \.\.\.>$/.exec(line);
    if (unfinished) {
      pending.set(unfinished[1]!, unfinished[2]!);
      continue;
    }
    const resumed = /^(\d+)\s+<\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (resumed) {
      const start = pending.get(resumed[1]!);
      pending.delete(resumed[1]!);
      if (start !== undefined) lines.push(`${resumed[1]} ${start}${resumed[2]}`);
      continue;
    }
    lines.push(line);
  }
  for (const line of lines) {
    const m = /^\d+\s+(fsync|fdatasync|syncfs|rename|renameat|renameat2|rmdir|unlink)\((.*)\)\s+=\s+(-?\d+)/.exec(line);
    if (!m) continue;
    const [, name, rawArgs, result] = m;
    const paths = name!.startsWith('rename') || name === 'rmdir' || name === 'unlink' ? [...rawArgs!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]!) : [/<(.*)>/.exec(rawArgs!)?.[1] ?? ''];
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

/** A zstd backup of a rich tree, then its replace restore over an older target, under strace. */
async function tracedReplaceRestore(extra: string[] = []): Promise<{ dest: string; target: string; calls: Call[] }> {
  const source = await tempDir('src');
  buildRichTree(source, { bigFileBytes: 100_000 });
  const dest = fs.realpathSync(await tempDir('dest'));
  expect((await runCli(['backup', '--source', source, '--dest', dest, '--compression', 'zstd'])).code).toBe(0);
  const target = fs.realpathSync(await tempDir('target'));
  fs.writeFileSync(path.join(target, 'old.txt'), 'old\n');
  const { calls, code } = traced(['restore', '--dest', dest, '--archive', 'latest', '--target', target, '--no-snapshot', ...extra]);
  expect(code).toBe(0);
  return { dest, target, calls };
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

  it('restore: the staged tree is synced before the journal in DEST commits to the swap, the journal and the done marker fsynced before their renames', async () => {
    const { dest, calls } = await tracedReplaceRestore(['--request-id', 'r1']);
    // The journal is rewritten at each phase: extracting, with its directory's inode, evacuate, install.
    const isJournalRename = (c: Call) => c.name.startsWith('rename') && c.ok && /\/\.\.pvc-backup-restore-[0-9a-f]+\.journal\.partial$/.test(c.paths[0]!);
    const journalRenames = calls.flatMap((c, i) => (isJournalRename(c) ? [i] : []));
    expect(journalRenames.length, 'the journal is written for each phase').toBeGreaterThanOrEqual(4);
    const journalTmp = calls[journalRenames[0]!]!.paths[0]!;
    const journal = calls[journalRenames[0]!]!.paths[1]!;
    expect(path.dirname(journal), 'the journal lives in DEST').toBe(dest);
    expectDurableRename(calls, dest, path.basename(journalTmp), path.basename(journal));
    for (const renamed of journalRenames) {
      const lastSync = calls.slice(0, renamed).findLastIndex((c) => isSync(c, journalTmp));
      expect(lastSync, 'each journal write fsynced before its rename').toBeGreaterThan(Math.max(-1, ...journalRenames.filter((r) => r < renamed)));
    }
    // sync -f (syncfs on the target's file system), or a global sync, before the journal says evacuate.
    const commit = journalRenames[2]!;
    const synced = find(calls, (c) => c.name === 'syncfs' && c.ok);
    expect(synced, 'syncfs of the target file system').toBeGreaterThan(-1);
    expect(synced, 'staged data synced before the journal commits to the swap').toBeLessThan(commit);
    expect(synced, 'after the staging directory was recorded').toBeGreaterThan(journalRenames[1]!);
    expectDurableRename(calls, dest, '..pvc-backup-restore-r1.done.partial', '.pvc-backup-restore-r1.done');
  });

  it('restore: the empty staging directory goes after the swap\'s last fsync of the target, right before the journal', async () => {
    // While the staging directory is there, a run killed at the end of its swap is recognised by
    // the next one and finished; without it, its journal would look like another target's.
    const { dest, target, calls } = await tracedReplaceRestore();
    const run = /\/(\.pvc-backup-restore-[0-9a-f]+)\.journal$/;
    const journalGone = find(calls, (c) => c.name === 'unlink' && c.ok && path.dirname(c.paths[0]!) === dest && run.test(c.paths[0]!));
    expect(journalGone, 'the journal is deleted').toBeGreaterThan(-1);
    const staging = path.join(target, run.exec(calls[journalGone]!.paths[0]!)![1]!);
    const isRemoved = (dir: string) => (c: Call) => c.name === 'rmdir' && c.ok && c.paths[0] === dir;
    expect(calls.findIndex(isRemoved(staging)), 'the staging directory is removed right before the journal').toBe(journalGone - 1);
    const oldGone = calls.findIndex(isRemoved(`${staging}.old`));
    expect(oldGone, 'the previous entries are removed first').toBeGreaterThan(-1);
    const synced = calls.slice(0, journalGone).findLastIndex((c) => isSync(c, target));
    expect(synced, 'the target fsynced after .old is gone').toBeGreaterThan(oldGone);
    expect(synced, 'and before the staging directory goes').toBeLessThan(journalGone - 1);
  });
});
