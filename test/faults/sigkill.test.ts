import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { compareNewestFirst, parseArchiveName } from '../../runner/store/naming.js';
import {
  type PublishedArchive,
  archivePartials,
  buildSource,
  checkPublished,
  describeRun,
  isRoot,
  mountTmpfs,
  pollUntil,
  rng,
  runJson,
  seedFor,
  sizeOf,
  sleep,
  startCli,
  tally,
  tempDir,
} from './helpers.js';
import { LOCK_FILE } from '../../runner/store/naming.js';

/**
 * Case 1: SIGKILL during backup, at random byte offsets of the partial archive and at the
 * phases after writing (fsync/verify, publish, prune). A killed run cannot clean up, so this is
 * what the crash-safety design alone must guarantee:
 *  - no name that looks like a complete archive exists without a valid checksum and manifest;
 *  - every earlier archive is untouched (or removed by a prune the killed run was entitled to);
 *  - the next run removes the leftovers and breaks the dead run's lock, with warnings;
 *  - a lock of a live run on another host is honoured (exit 4) until its heartbeat is stale.
 */

const seed = seedFor('faults/sigkill');
const r = rng(seed);
const MiB = 1024 * 1024;
const LOCK = LOCK_FILE;

let source: string;
let dest: string;
const archiveSize: Record<'none' | 'zstd', number> = { none: 0, zstd: 0 };
const hashes = new Map<string, string>();

function backupArgs(compression: 'none' | 'zstd', keepLast: number): string[] {
  const args = ['backup', '--source', source, '--dest', dest, '--compression', compression, '--keep-last', String(keepLast)];
  if (compression === 'zstd') args.push('--level', '1');
  return args;
}

/** Identity of a file that survives inode reuse: name, inode and change time. */
function identityOf(file: string): string {
  try {
    const st = fs.statSync(file);
    return `${path.basename(file)}:${st.ino}:${st.ctimeMs}`;
  } catch {
    return 'gone';
  }
}

function newestFirst(names: string[]): string[] {
  return names.map((n) => parseArchiveName(n)!).sort(compareNewestFirst).map((a) => a.name);
}

beforeAll(async () => {
  // As root (CI), source and archives live on a RAM-backed tmpfs: the same kernel semantics for a
  // killed process, without 1.5 GB of disk writes per run. Otherwise the OS temp dir is used.
  const root = tempDir('sigkill');
  if (isRoot) mountTmpfs(root, '2g');
  source = path.join(root, 'src');
  dest = path.join(root, 'dest');
  fs.mkdirSync(source);
  fs.mkdirSync(dest);
  // ~200 MiB: three large files, forty medium ones and 1500 small ones in nested directories.
  buildSource(source, { seed, large: [64 * MiB, 48 * MiB, 48 * MiB], medium: { count: 40, size: 512 * 1024 }, small: { count: 1500, maxSize: 16 * 1024 } });
  // The earlier archives (one per compression), and the final sizes the kill offsets are drawn from.
  for (const compression of ['none', 'zstd'] as const) {
    const made = await runJson(backupArgs(compression, 10));
    expect(made.code, describeRun(made)).toBe(0);
    const done = made.lines.find((l) => l.event === 'backup.done')!;
    archiveSize[compression] = done.bytesOut as number;
    }
}, 120_000);

interface Trial {
  index: number;
  compression: 'none' | 'zstd';
  keepLast: number;
  /** Where the kill lands: a byte offset of the partial, or a phase after writing. */
  point: { offset: number } | { phase: 'start' | 'written' | 'verified' | 'prune'; delayMs: number };
}

function planTrials(): Trial[] {
  const trials: Trial[] = [];
  for (let i = 0; i < 22; i++) {
    const compression = i % 3 === 2 ? 'zstd' : 'none';
    trials.push({ index: i, compression, keepLast: 4, point: { offset: r.int(0, archiveSize[compression]) } });
  }
  const phases = ['start', 'written', 'written', 'verified', 'prune', 'prune'] as const;
  phases.forEach((phase, k) =>
    trials.push({
      index: 22 + k,
      compression: k % 2 === 0 ? 'none' : 'zstd',
      keepLast: phase === 'prune' ? 2 : 4,
      point: { phase, delayMs: phase === 'written' ? r.int(0, 400) : 0 },
    }),
  );
  return trials;
}

describe('SIGKILL during backup', () => {
  it('never leaves a complete-looking archive without a valid checksum, never harms earlier archives, and the next run cleans up', async () => {
    const trials = planTrials();
    let passed = 0;
    let leftovers: { partials: string[]; lock: boolean } = { partials: [], lock: false };

    for (const trial of trials) {
      const where = 'offset' in trial.point ? `offset ${trial.point.offset}` : `phase ${trial.point.phase} +${trial.point.delayMs}ms`;
      const label = `seed ${seed}, trial ${trial.index} (${trial.compression}, kill at ${where})`;
      const before = checkPublished(dest, hashes);
      expect(before.problems, label).toEqual([]);

      const run = startCli(backupArgs(trial.compression, trial.keepLast));
      let partialSize = -1;
      // The partial this run writes: not a leftover of the previous run (which may even have had the same name).
      const leftoverIds = new Set(leftovers.partials.map((n) => identityOf(path.join(dest, n))));
      const partialPath = () => {
        const [p] = archivePartials(dest)
          .map((n) => path.join(dest, n))
          .filter((p) => !p.endsWith('.sha256.partial') && !p.endsWith('.manifest.json.partial') && !leftoverIds.has(identityOf(p)));
        return p;
      };
      if ('offset' in trial.point) {
        const offset = trial.point.offset;
        await pollUntil(() => {
          const p = partialPath();
          partialSize = p ? sizeOf(p) : -1;
          return partialSize >= offset;
        }, run.exited);
      } else if (trial.point.phase === 'written') {
        const full = archiveSize[trial.compression];
        await pollUntil(() => {
          const p = partialPath();
          partialSize = p ? sizeOf(p) : -1;
          return partialSize >= full;
        }, run.exited);
        await sleep(trial.point.delayMs);
      } else {
        const event = { start: 'backup.start', verified: 'backup.verified', prune: 'prune.delete' }[trial.point.phase];
        await run.waitForLine((l) => l.event === event);
      }
      run.kill('SIGKILL');
      const exit = await run.exited;
      const result = { code: exit.code, signal: exit.signal, stdout: run.stdout(), stderr: run.stderr() };
      const context = `${label}, partial at ${partialSize} bytes when killed\n${describeRun(result)}`;
      // A kill after the run finished is no kill; only the phase trials may (rarely) finish first.
      if ('offset' in trial.point) expect(exit.signal, context).toBe('SIGKILL');

      // 1. Nothing visible is incomplete or unverifiable.
      const after = checkPublished(dest, hashes);
      expect(after.problems, context).toEqual([]);

      // 2. Earlier archives are untouched, unless this run made a new archive and then pruned them.
      const beforeNames = before.archives.map((a) => a.name);
      const afterByName = new Map(after.archives.map((a) => [a.name, a] as [string, PublishedArchive]));
      const made = after.archives.filter((a) => !beforeNames.includes(a.name)).map((a) => a.name);
      expect(made.length, context).toBeLessThanOrEqual(1);
      const prunable = made.length === 1 ? newestFirst([...beforeNames, ...made]).slice(trial.keepLast) : [];
      for (const old of before.archives) {
        const now = afterByName.get(old.name);
        if (!now) {
          expect(prunable, `${context}\n${old.name} disappeared`).toContain(old.name);
          continue;
        }
        expect(now.sha256, `${context}\n${old.name} changed`).toBe(old.sha256);
      }

      // 3. This run, if it got past taking the lock, removed the previous run's leftovers and broke its lock.
      const started = run.lines.some((l) => l.event === 'backup.start');
      if (started) {
        const removed = run.lines.filter((l) => l.event === 'backup.leftover-removed').map((l) => l.file);
        expect(removed.sort(), context).toEqual([...leftovers.partials].sort());
        const broke = run.lines.some((l) => l.event === 'lock.warning' && /breaking stale lock/.test(l.msg));
        expect(broke, context).toBe(leftovers.lock);
      }
      leftovers = { partials: archivePartials(dest), lock: fs.existsSync(path.join(dest, LOCK)) };
      passed++;
    }
    tally('1 SIGKILL during backup (random offsets + phases)', trials.length, passed);
    expect(passed).toBe(trials.length);

    // The next run succeeds, removes every leftover with a warning and breaks the dead run's lock.
    const next = await runJson(backupArgs('none', 3));
    const context = `seed ${seed}, recovery run\n${describeRun(next)}`;
    expect(next.code, context).toBe(0);
    const removed = next.lines.filter((l) => l.event === 'backup.leftover-removed').map((l) => l.file as string);
    expect(removed.sort(), context).toEqual([...leftovers.partials].sort());
    expect(next.lines.some((l) => l.event === 'lock.warning' && /breaking stale lock/.test(l.msg)), context).toBe(leftovers.lock);
    expect(archivePartials(dest), context).toEqual([]);
    expect(fs.existsSync(path.join(dest, LOCK)), context).toBe(false);
    expect(checkPublished(dest, hashes).problems, context).toEqual([]);

    // Every archive that survived the kills (and the pruning of finished runs) verifies completely.
    const verify = await runJson(['verify', '--dest', dest, '--all']);
    expect(verify.code, describeRun(verify)).toBe(0);
    expect(verify.lines.filter((l) => l.event === 'verify.ok').length).toBe(checkPublished(dest, hashes).archives.length);
  }, 280_000);

  it('honours the lock of a run that may be alive elsewhere, and breaks it once its heartbeat is stale', async () => {
    const small = tempDir('small');
    fs.writeFileSync(path.join(small, 'a.txt'), 'a\n');
    const lockFile = path.join(dest, LOCK);
    const before = checkPublished(dest, hashes).archives.map((a) => a.name);
    // A run on another node (pid unknowable from here) whose heartbeat is fresh: honoured.
    fs.writeFileSync(lockFile, JSON.stringify({ host: 'another-node', pid: 4242, command: 'backup', startedAt: new Date().toISOString() }) + '\n');
    const blocked = await runJson(['backup', '--source', small, '--dest', dest, '--prefix', 'lockcheck', '--lock-stale-after', '10m']);
    expect(blocked.code, describeRun(blocked)).toBe(4);
    expect(blocked.lines.at(-1)?.msg).toMatch(/locked by another pvc-backup run \(backup pid 4242 on host another-node/);
    expect(fs.existsSync(lockFile)).toBe(true);
    expect(checkPublished(dest, hashes).archives.map((a) => a.name)).toEqual(before);
    // Its heartbeat stopped 11 minutes ago: stale, broken with a warning.
    const past = new Date(Date.now() - 11 * 60 * 1000);
    fs.utimesSync(lockFile, past, past);
    const after = await runJson(['backup', '--source', small, '--dest', dest, '--prefix', 'lockcheck', '--lock-stale-after', '10m']);
    expect(after.code, describeRun(after)).toBe(0);
    expect(after.lines.some((l) => l.event === 'lock.warning' && /breaking stale lock .* another-node/.test(l.msg))).toBe(true);
    expect(fs.existsSync(lockFile)).toBe(false);
    tally('1 lock after a kill: honoured while fresh, broken when stale', 2, 2);
  }, 60_000);
});
