import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Running,
  archivePartials,
  buildSource,
  checkPublished,
  describeRun,
  exitStatus,
  pollUntil,
  rng,
  runJson,
  seedFor,
  sizeOf,
  sleep,
  stateDiff,
  targetState,
  startCli,
  tally,
  tempDir,
} from './helpers.js';
import { LOCK_FILE } from '../../runner/store/naming.js';

/**
 * Case 2: SIGTERM (what Kubernetes sends, 30 s before SIGKILL) during backup and during
 * restore: the run stops within 5 s with a non-zero exit (143; 130 for SIGINT), removes its
 * partial files and the lock, and leaves every published archive and the restore target as
 * they were (a restore that already swapped leaves the complete restored tree, never a mix).
 */

const seed = seedFor('faults/sigterm');
const r = rng(seed);
const MiB = 1024 * 1024;
const LOCK = LOCK_FILE;
const STOP_LIMIT_MS = 5_000;

let source: string;
let dest: string;
const hashes = new Map<string, string>();

beforeAll(async () => {
  source = tempDir('src');
  dest = tempDir('dest');
  buildSource(source, { seed, large: [40 * MiB, 24 * MiB], medium: { count: 64, size: 256 * 1024 }, small: { count: 600, maxSize: 12 * 1024 } });
  const first = await runJson(['backup', '--source', source, '--dest', dest, '--compression', 'zstd', '--level', '1']);
  expect(first.code, describeRun(first)).toBe(0);
}, 120_000);

/** Sends the signal, then checks the exit code and the time the run needed to stop. */
async function stop(run: Running, signal: NodeJS.Signals, label: string): Promise<{ ms: number; context: string; code: number | null }> {
  const sentAt = Date.now();
  run.kill(signal);
  const exit = await run.exited;
  const ms = exit.at - sentAt;
  const context = `${label}, stopped after ${ms} ms\n${describeRun({ code: exit.code, signal: exit.signal, stdout: run.stdout(), stderr: run.stderr() })}`;
  // The runner cleans up, then dies by the signal itself (or exits 128+n as a container's PID 1).
  return { ms, context, code: exitStatus(exit) };
}

describe('SIGTERM during backup', () => {
  const compressions = ['gzip', 'zstd', 'none'] as const;

  it('stops within 5 s with exit 143, removing the partial and the lock, at random points of the run', async () => {
    const trials: { compression: (typeof compressions)[number]; point: { fraction: number } | { event: string } }[] = [];
    for (let i = 0; i < 9; i++) trials.push({ compression: compressions[i % 3]!, point: { fraction: r.next() } });
    for (const event of ['backup.start', 'backup.verified', 'prune.delete']) trials.push({ compression: r.pick(compressions), point: { event } });
    let passed = 0;
    let reference = 0;
    for (const [index, trial] of trials.entries()) {
      const before = checkPublished(dest, hashes);
      const args = ['backup', '--source', source, '--dest', dest, '--compression', trial.compression, '--keep-last', '2'];
      if (trial.compression !== 'none') args.push('--level', '1');
      const run = startCli(args);
      let label: string;
      if ('fraction' in trial.point) {
        // The first archive's size stands in for the final size; the partial is watched from the test.
        reference ||= before.archives[0]!.size;
        const offset = Math.floor(trial.point.fraction * reference * 0.9);
        label = `seed ${seed}, trial ${index} (${trial.compression}, SIGTERM at partial offset ${offset})`;
        await pollUntil(() => archivePartials(dest).some((n) => sizeOf(path.join(dest, n)) >= offset), run.exited);
      } else {
        const event = trial.point.event;
        label = `seed ${seed}, trial ${index} (${trial.compression}, SIGTERM at ${event})`;
        await run.waitForLine((l) => l.event === event);
      }
      const { ms, context, code } = await stop(run, 'SIGTERM', label);
      const finished = run.lines.some((l) => l.event === 'backup.done');
      if (!finished) {
        expect(code, context).toBe(143);
        expect(run.lines.some((l) => l.event === 'stopped' && /stopped by SIGTERM/.test(l.msg)), context).toBe(true);
      }
      expect(ms, context).toBeLessThanOrEqual(STOP_LIMIT_MS);
      expect(archivePartials(dest), context).toEqual([]);
      expect(fs.existsSync(path.join(dest, LOCK)), context).toBe(false);
      const after = checkPublished(dest, hashes);
      expect(after.problems, context).toEqual([]);
      // A stopped run publishes at most its own archive, complete and valid (checked above: the
      // signal may land after the rename), and removes nothing unless it had reached prune.
      const afterNames = after.archives.map((a) => a.name);
      const beforeNames = before.archives.map((a) => a.name);
      expect(afterNames.filter((n) => !beforeNames.includes(n)).length, context).toBeLessThanOrEqual(1);
      if (!run.lines.some((l) => l.event.startsWith('prune.'))) {
        for (const n of beforeNames) expect(afterNames, context).toContain(n);
      }
      for (const a of after.archives) {
        const old = before.archives.find((b) => b.name === a.name);
        if (old) expect(a.sha256, context).toBe(old.sha256);
      }
      passed++;
    }
    tally('2 SIGTERM during backup', trials.length, passed);
    const verify = await runJson(['verify', '--dest', dest, '--all']);
    expect(verify.code, describeRun(verify)).toBe(0);
  }, 200_000);

  it('stops on SIGINT with exit 130 the same way', async () => {
    const run = startCli(['backup', '--source', source, '--dest', dest, '--compression', 'none']);
    await pollUntil(() => archivePartials(dest).some((n) => sizeOf(path.join(dest, n)) >= 8 * MiB), run.exited);
    const { ms, context, code } = await stop(run, 'SIGINT', `seed ${seed}, SIGINT at 8 MiB`);
    expect(code, context).toBe(130);
    expect(ms, context).toBeLessThanOrEqual(STOP_LIMIT_MS);
    expect(archivePartials(dest), context).toEqual([]);
    expect(fs.existsSync(path.join(dest, LOCK)), context).toBe(false);
    tally('2 SIGINT during backup', 1, 1);
  }, 60_000);
});

describe('SIGTERM during restore', () => {
  it('stops within 5 s with exit 143, removes staging, partial snapshot and lock, and leaves the target old or completely restored', async () => {
    const archive = checkPublished(dest, hashes).archives.at(-1)!.name;
    const target = tempDir('target');
    // Calibration: how long a whole restore takes here, to spread the signals over it.
    const calibrationTarget = tempDir('calibration');
    const t0 = Date.now();
    const calibration = await runJson(['restore', '--dest', dest, '--archive', archive, '--target', calibrationTarget, '--no-snapshot']);
    expect(calibration.code, describeRun(calibration)).toBe(0);
    const duration = Date.now() - t0;
    const restored = targetState(calibrationTarget);
    fs.rmSync(calibrationTarget, { recursive: true, force: true });

    const trials: ({ delayMs: number } | { event: string })[] = [];
    for (let i = 0; i < 6; i++) trials.push({ delayMs: r.int(50, duration) });
    for (const event of ['restore.start', 'restore.verified', 'restore.snapshot']) trials.push({ event });
    let passed = 0;
    for (const [index, trial] of trials.entries()) {
      // The target holds other data each time; a snapshot of it goes into DEST (prefix backup-pre-restore).
      fs.rmSync(target, { recursive: true, force: true });
      fs.mkdirSync(target);
      buildSource(target, { seed: seed + index, medium: { count: 8, size: 1024 * 1024 }, small: { count: 50, maxSize: 4096 } });
      const old = targetState(target);
      const destBefore = checkPublished(dest, hashes);
      const run = startCli(['restore', '--dest', dest, '--archive', archive, '--target', target]);
      const label = `seed ${seed}, restore trial ${index} (SIGTERM ${'delayMs' in trial ? `after ${trial.delayMs} ms` : `at ${trial.event}`})`;
      if ('delayMs' in trial) await Promise.race([sleep(trial.delayMs), run.exited]);
      else await run.waitForLine((l) => l.event === trial.event);
      const { ms, context, code } = await stop(run, 'SIGTERM', label);
      const finished = run.lines.some((l) => l.event === 'restore.done');
      if (!finished) expect(code, context).toBe(143);
      expect(ms, context).toBeLessThanOrEqual(STOP_LIMIT_MS);
      expect(fs.existsSync(path.join(dest, LOCK)), context).toBe(false);
      expect(archivePartials(dest), context).toEqual([]);
      expect(checkPublished(dest, hashes).problems, context).toEqual([]);
      // The backups are all still there (pre-restore snapshots are kept 3 deep by design, so older ones may go).
      for (const a of destBefore.archives.filter((x) => x.name.startsWith('backup-2'))) expect(fs.existsSync(path.join(dest, a.name)), `${context}\n${a.name} gone`).toBe(true);
      const leftovers = fs.readdirSync(target).filter((n) => n.startsWith('.pvc-backup-restore-'));
      expect(leftovers, context).toEqual([]);
      const now = targetState(target);
      const verdict =
        now.tree === old.tree ? 'old' : now.tree === restored.tree ? 'restored' : `neither: vs old ${stateDiff(old.tree, now.tree)} | vs restored ${stateDiff(restored.tree, now.tree)}`;
      expect(['old', 'restored'], `${context}\n${verdict}`).toContain(verdict);
      if (verdict === 'old') expect(Math.abs(now.rootMtimeMs - old.rootMtimeMs), `${context}\ntarget mtime changed`).toBeLessThanOrEqual(1);
      passed++;
    }
    tally('2 SIGTERM during restore', trials.length, passed);
  }, 200_000);
});
