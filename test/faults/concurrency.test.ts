import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { compareNewestFirst, parseArchiveName } from '../../runner/store/naming.js';
import {
  type Running,
  archivePartials,
  buildSource,
  bulkDir,
  checkPublished,
  describeRun,
  pollUntil,
  publishedFiles,
  runJson,
  seedFor,
  sizeOf,
  sleep,
  startCli,
  tally,
  targetState,
  tempDir,
} from './helpers.js';
import { LOCK_FILE } from '../../runner/store/naming.js';

/**
 * Case 7: concurrency. Backups started at the same moment against one backup directory:
 * exactly one writes, the others exit 4 — never two runs holding the directory at once. A run
 * holding the lock keeps it under full CPU load (its heartbeat stays fresh even with a short
 * stale age). prune (and restore) while a backup runs never remove the in-progress or the
 * newest complete archive; verify, which takes no lock, still works.
 */

const seed = seedFor('faults/concurrency');
const MiB = 1024 * 1024;
const LOCK = LOCK_FILE;

let root: string;
let small: string;
let big: string;

beforeAll(() => {
  root = bulkDir('concurrency', '2g');
  small = path.join(root, 'small');
  big = path.join(root, 'big');
  buildSource(small, { seed, small: { count: 30, maxSize: 2048 } });
  buildSource(big, { seed, large: [48 * MiB, 48 * MiB, 48 * MiB, 48 * MiB], medium: { count: 40, size: 256 * 1024 }, small: { count: 400, maxSize: 4096 } });
});

function freshDest(label: string): string {
  const dest = path.join(root, `${label}-${Math.random().toString(36).slice(2, 8)}`);
  fs.mkdirSync(dest);
  return dest;
}

/** When each successful run held the directory: from its first line after the lock to its last. */
function heldInterval(run: Running): [number, number] | undefined {
  const times = run.lines.filter((l) => l.time).map((l) => Date.parse(l.time));
  return times.length ? [Math.min(...times), Math.max(...times)] : undefined;
}

describe('backups started at the same moment', () => {
  it('exactly one writes, the others exit 4 naming the holder; never two at once', async () => {
    const plan = [...Array.from({ length: 8 }, () => 2), 4, 4];
    let passed = 0;
    let lockedSeen = 0;
    for (const [trial, n] of plan.entries()) {
      const dest = freshDest(`race${trial}`);
      // Earlier archives, so "never interleaved" also means "never pruned by two runs".
      const runs = Array.from({ length: n }, () => startCli(['backup', '--source', big, '--dest', dest, '--compression', 'none', '--keep-last', '2']));
      const exits = await Promise.all(runs.map((r) => r.exited));
      const label = `seed ${seed}, trial ${trial} (${n} at once): exits ${exits.map((e) => e.code).join(', ')}`;
      const context = `${label}\n${runs.map((r, i) => `run ${i}: ${describeRun({ code: exits[i]!.code, signal: exits[i]!.signal, stdout: r.stdout(), stderr: r.stderr() })}`).join('\n')}`;
      const ok = runs.filter((_, i) => exits[i]!.code === 0);
      const locked = runs.filter((_, i) => exits[i]!.code === 4);
      expect(ok.length + locked.length, context).toBe(n);
      expect(ok.length, context).toBeGreaterThanOrEqual(1);
      for (const r of locked) expect(r.lines.at(-1)?.msg, context).toMatch(/is locked by another pvc-backup run \(backup pid \d+ on host/);
      // Runs that both succeeded did not overlap (one started after the other had finished).
      const intervals = ok.map(heldInterval).sort((a, b) => a![0] - b![0]);
      for (let i = 1; i < intervals.length; i++) expect(intervals[i]![0], `${context}\noverlapping holders`).toBeGreaterThanOrEqual(intervals[i - 1]![1]);
      const published = checkPublished(dest);
      expect(published.problems, context).toEqual([]);
      expect(published.archives.length, context).toBe(ok.length);
      expect(archivePartials(dest), context).toEqual([]);
      expect(fs.existsSync(path.join(dest, LOCK)), context).toBe(false);
      lockedSeen += locked.length;
      passed++;
      fs.rmSync(dest, { recursive: true, force: true });
    }
    // The runs really raced: most trials ended with someone locked out.
    expect(lockedSeen, 'no run was ever locked out: the trials did not overlap').toBeGreaterThanOrEqual(plan.length);
    tally('7 simultaneous backups (2 or 4 at once)', plan.length, passed);
  }, 180_000);
});

describe('while a backup runs', () => {
  it('keeps its lock under full CPU load even with a 2 s stale age: every contender exits 4', async () => {
    const dest = freshDest('heartbeat');
    const holder = startCli(['backup', '--source', big, '--dest', dest, '--compression', 'gzip', '--level', '6', '--lock-stale-after', '2s']);
    await holder.waitForLine((l) => l.event === 'backup.start');
    let contenders = 0;
    const problems: string[] = [];
    const started = Date.now();
    while (Date.now() - started < 60_000) {
      const contender = await runJson(['backup', '--source', small, '--dest', dest, '--lock-stale-after', '2s']);
      if (holder.child.exitCode !== null) break;
      contenders++;
      if (contender.code !== 4) problems.push(`contender ${contenders} exited ${contender.code}: ${describeRun(contender)}`);
      await sleep(150);
    }
    const exit = await holder.exited;
    expect(exit.code, describeRun({ code: exit.code, signal: exit.signal, stdout: holder.stdout(), stderr: holder.stderr() })).toBe(0);
    expect(holder.lines.some((l) => l.event === 'lock.warning'), holder.stdout()).toBe(false);
    expect(problems).toEqual([]);
    expect(contenders, 'the backup was too short to be contended').toBeGreaterThanOrEqual(2);
    tally('7 contenders against a live lock under load (2 s stale age)', contenders, contenders - problems.length);
  }, 120_000);

  // SHA-256 has no shortcut for a hole's zeros: 12 GiB of them take seconds of hashing in backup
  // and again in restore. Hashed in one go on the main thread, the heartbeat stopped that long and a
  // prune broke the live lock and deleted the backup's partial files.
  it('keeps its lock while it hashes a 12 GiB hole, and so does a restore of it: prune exits 4', async () => {
    const source = tempDir('hole-source');
    fs.writeFileSync(path.join(source, 'notes.txt'), 'a disk image with nothing in it yet\n');
    const image = path.join(source, 'disk.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 12 * 1024 * MiB);
    const dest = freshDest('hole');
    const target = tempDir('hole-target');
    const contend = async (holder: Running, what: string) => {
      await pollUntil(() => fs.existsSync(path.join(dest, LOCK)), holder.exited);
      // Longer than the stale age: the heartbeat must have been refreshed in between.
      await sleep(3000);
      const prune = await runJson(['prune', '--dest', dest, '--keep-last', '1', '--lock-stale-after', '2s']);
      expect(holder.child.exitCode, `the ${what} ended before prune could contend`).toBe(null);
      expect(prune.code, describeRun(prune)).toBe(4);
      expect(prune.lines.at(-1)?.msg).toMatch(new RegExp(`is locked by another pvc-backup run \\(${what} pid`));
      const exit = await holder.exited;
      expect(exit.code, describeRun({ code: exit.code, signal: exit.signal, stdout: holder.stdout(), stderr: holder.stderr() })).toBe(0);
      expect(holder.lines.some((l) => l.event === 'lock.warning'), holder.stdout()).toBe(false);
    };
    await contend(startCli(['backup', '--source', source, '--dest', dest, '--compression', 'zstd', '--lock-stale-after', '2s']), 'backup');
    await contend(startCli(['restore', '--dest', dest, '--archive', 'latest', '--target', target, '--lock-stale-after', '2s']), 'restore');
    const restored = fs.statSync(path.join(target, 'disk.img'));
    expect(restored.size).toBe(12 * 1024 * MiB);
    expect(restored.blocks).toBe(0);
  }, 180_000);

  it('prune exits 4 and deletes nothing; prune --dry-run never names the in-progress or newest archive; verify still works', async () => {
    const dest = freshDest('prune');
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(path.join(small, 'round.txt'), `round ${i}\n`);
      const made = await runJson(['backup', '--source', small, '--dest', dest]);
      expect(made.code, describeRun(made)).toBe(0);
    }
    const before = checkPublished(dest).archives.map((a) => a.name);
    const newest = before.map((n) => parseArchiveName(n)!).sort(compareNewestFirst)[0]!.name;
    const backup = startCli(['backup', '--source', big, '--dest', dest, '--compression', 'gzip', '--level', '9', '--keep-last', '10']);
    await pollUntil(() => archivePartials(dest).some((n) => sizeOf(path.join(dest, n)) > 1 * MiB), backup.exited);
    const running = () => backup.child.exitCode === null && backup.child.signalCode === null;
    let trials = 0;
    // A restore needs the lock too: it waits for nothing and changes nothing.
    const target = tempDir('target');
    fs.writeFileSync(path.join(target, 'live.txt'), 'live\n');
    const targetBefore = targetState(target);
    const restore = await runJson(['restore', '--dest', dest, '--archive', 'latest', '--target', target]);
    expect(running(), 'the backup ended before the restore could contend').toBe(true);
    expect(restore.code, describeRun(restore)).toBe(4);
    expect(targetState(target).tree).toBe(targetBefore.tree);
    trials++;
    let rounds = 0;
    while (rounds < 2 && running()) {
      // (verify records its result in the manifests, so the picture is taken each round)
      const files = publishedFiles(dest);
      const prune = await runJson(['prune', '--dest', dest, '--keep-last', '1']);
      expect(prune.code, describeRun(prune)).toBe(4);
      expect(publishedFiles(dest)).toEqual(files);
      const dry = await runJson(['prune', '--dest', dest, '--keep-last', '1', '--dry-run']);
      expect(dry.code, describeRun(dry)).toBe(0);
      const would = dry.lines.filter((l) => l.event === 'prune.would-delete').map((l) => l.archive as string);
      // The backup may have finished meanwhile (then its archive is the newest): judged after the dry run.
      const newestNow = checkPublished(dest).archives.map((a) => parseArchiveName(a.name)!).sort(compareNewestFirst)[0]!.name;
      expect(would).not.toContain(newestNow);
      if (newestNow === newest) expect(would).not.toContain(newest);
      expect(would.some((n) => n.startsWith('.'))).toBe(false);
      const verify = await runJson(['verify', '--dest', dest, '--all']);
      expect(verify.code, describeRun(verify)).toBe(0);
      trials += 3;
      rounds++;
    }
    expect(rounds, 'the backup ended before prune could contend').toBeGreaterThanOrEqual(1);
    const exit = await backup.exited;
    expect(exit.code, backup.stdout()).toBe(0);
    const after = checkPublished(dest);
    expect(after.problems).toEqual([]);
    for (const name of before) expect(after.archives.map((a) => a.name)).toContain(name);
    expect(after.archives.length).toBe(before.length + 1);
    tally('7 prune / prune --dry-run / verify / restore during a backup', trials, trials);
  }, 120_000);
});
