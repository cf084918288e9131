import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  archivePartials,
  buildSource,
  checkPublished,
  describeRun,
  freeBytes,
  isRoot,
  mountTmpfs,
  publishedFiles,
  pseudoRandomBytes,
  runJson,
  seedFor,
  stateDiff,
  targetState,
  tally,
  tempDir,
  unmount,
} from './helpers.js';
import { LOCK_FILE } from '../../runner/store/naming.js';

/**
 * Case 3: out of space. The backup directory (or the restore target) is a tiny tmpfs, so the
 * kernel's own ENOSPC hits the runner: while the archive is written, and (by filling the volume
 * to a page-exact level) at every later step: fsync, the .sha256, the manifest. Every time the
 * run fails with exit 1 and a message that says the backup volume is full and how big the
 * archive had become; nothing partial stays visible; prune does not run; earlier archives are
 * intact. A restore whose staging runs out of space leaves the current data as it was.
 */

const seed = seedFor('faults/enospc');
const MiB = 1024 * 1024;
const PAGE = 4096;
const LOCK = LOCK_FILE;
const skip = !isRoot;
if (skip) process.stdout.write('[faults] case 3 (out of space) skipped: mounting a tmpfs needs root (CI runs as root)\n');

let small: string;
let dest: string;
const hashes = new Map<string, string>();

/** Two earlier archives on the tiny volume, so "prune did not run" and "earlier archives intact" can be seen. */
async function earlierArchives(into: string): Promise<Record<string, string>> {
  for (let i = 0; i < 2; i++) {
    fs.writeFileSync(path.join(small, 'round.txt'), `round ${i}\n`);
    const made = await runJson(['backup', '--source', small, '--dest', into, '--compression', 'gzip']);
    expect(made.code, describeRun(made)).toBe(0);
  }
  return publishedFiles(into);
}

function expectNoSpaceFailure(run: Awaited<ReturnType<typeof runJson>>, context: string): string {
  expect(run.code, context).toBe(1);
  const failure = run.lines.find((l) => l.event === 'backup.failed' || l.event === 'restore.failed');
  expect(failure, context).toBeDefined();
  return failure!.msg;
}

describe.skipIf(skip)('out of space on the backup volume', () => {
  let mount: string;

  beforeAll(() => {
    small = tempDir('small');
    buildSource(small, { seed, small: { count: 40, maxSize: 4096 } });
    mount = tempDir('tmpfs');
    mountTmpfs(mount, '8m');
    dest = mount;
  });
  afterAll(() => unmount(mount));

  it('fails while writing the archive: exit 1, "backup volume is full" with the size reached, nothing left, no prune', async () => {
    const earlier = await earlierArchives(dest);
    // 12 MiB of incompressible data; the estimate (from the earlier, compressible archives) lets it start.
    const source = tempDir('big');
    buildSource(source, { seed, large: [6 * MiB], medium: { count: 24, size: 256 * 1024 } });
    const run = await runJson(['backup', '--source', source, '--dest', dest, '--compression', 'gzip', '--level', '1', '--keep-last', '1']);
    const context = `seed ${seed}\n${describeRun(run)}`;
    const message = expectNoSpaceFailure(run, context);
    expect(message, context).toMatch(/backup volume is full/);
    expect(message, context).toMatch(/the archive had reached \d+(\.\d)? (KiB|MiB)/);
    expect(archivePartials(dest), context).toEqual([]);
    expect(fs.existsSync(path.join(dest, LOCK)), context).toBe(false);
    expect(publishedFiles(dest), context).toEqual(earlier);
    expect(run.lines.some((l) => l.event.startsWith('prune.')), context).toBe(false);
    const verify = await runJson(['verify', '--dest', dest, '--all']);
    expect(verify.code, describeRun(verify)).toBe(0);
    tally('3 ENOSPC while writing the archive', 1, 1);
  }, 60_000);

  it('refuses up front when the estimate already does not fit, naming the sizes', async () => {
    const before = publishedFiles(dest);
    const source = tempDir('huge');
    buildSource(source, { seed: seed + 1, large: [40 * MiB] });
    const run = await runJson(['backup', '--source', source, '--dest', dest, '--compression', 'none', '--keep-last', '1']);
    const context = `seed ${seed}\n${describeRun(run)}`;
    const message = expectNoSpaceFailure(run, context);
    expect(message, context).toMatch(/not enough space on the backup volume: the source holds 40\.0 MiB .* has \d+(\.\d)? (KiB|MiB) free/);
    expect(fs.readdirSync(dest).filter((n) => n.startsWith('.')), context).toEqual([]);
    expect(publishedFiles(dest), context).toEqual(before);
    tally('3 ENOSPC refused by the free-space estimate', 1, 1);
  }, 60_000);

  it('fails cleanly at every later step (fsync, .sha256, manifest) when the volume fills page by page', async () => {
    // A source whose archive fits, and a manifest of several pages.
    const source = tempDir('fit');
    buildSource(source, { seed: seed + 2, large: [2 * MiB], small: { count: 150, maxSize: 2048 } });
    const scratch = tempDir('scratch');
    const probe = await runJson(['backup', '--source', source, '--dest', scratch, '--compression', 'gzip', '--level', '1']);
    expect(probe.code, describeRun(probe)).toBe(0);
    const archiveBytes = probe.lines.find((l) => l.event === 'backup.done')!.bytesOut as number;
    const manifestBytes = fs.statSync(path.join(scratch, fs.readdirSync(scratch).find((n) => n.endsWith('.manifest.json'))!)).size;
    const pages = (n: number) => Math.ceil(n / PAGE);
    // Lock + archive + .sha256 + manifest (+1 page of slack for a manifest a few bytes longer).
    const neededPages = 1 + pages(archiveBytes) + 1 + pages(manifestBytes) + 1;
    // Free space to leave, in pages: none, the lock only, half the archive, then page by page from
    // just below the archive's size to past everything, so ENOSPC lands on every later step.
    const levels = [0, 1, 1 + Math.floor(pages(archiveBytes) / 2)];
    for (let p = pages(archiveBytes) - 1; p <= neededPages + 2; p++) levels.push(p);
    // The newest archive decides the estimate's compression ratio: make it one of the small, compressible ones.
    await earlierArchives(dest);

    const filler = path.join(dest, 'filler.bin');
    let failures = 0;
    let trials = 0;
    let succeededAt: number | undefined;
    const messages = new Set<string>();
    const problems: string[] = [];
    for (const level of levels) {
      fs.rmSync(filler, { force: true });
      const want = level * PAGE;
      const fill = freeBytes(dest) - want;
      if (fill > 0) fs.writeFileSync(filler, Buffer.alloc(fill, 1));
      const before = publishedFiles(dest);
      const run = await runJson(['backup', '--source', source, '--dest', dest, '--compression', 'gzip', '--level', '1', '--keep-last', '1']);
      trials++;
      const context = `seed ${seed}, ${want / PAGE} pages free (archive ${archiveBytes} B, manifest ${manifestBytes} B)\n${describeRun(run)}`;
      if (run.code === 0) {
        succeededAt = level;
        break;
      }
      failures++;
      expect(run.code, context).toBe(1);
      const message = run.lines.find((l) => l.event === 'backup.failed')?.msg ?? '';
      messages.add(message.replace(/\d[\d.]* (B|KiB|MiB)/g, 'N').replace(/\/tmp\/\S+/g, 'PATH'));
      problems.push(
        ...[
          // The size is named once there is an archive (not when even the lock file does not fit).
          /backup volume is full|not enough space on the backup volume/.test(message) && (/\d (B|KiB|MiB)/.test(message) || /not even for the lock file/.test(message))
            ? ''
            : `${context}\nmessage does not say the backup volume is full and how big the archive was`,
          archivePartials(dest).length === 0 ? '' : `${context}\npartials left: ${archivePartials(dest).join(', ')}`,
          fs.existsSync(path.join(dest, LOCK)) ? `${context}\nlock left` : '',
          JSON.stringify(publishedFiles(dest)) === JSON.stringify(before) ? '' : `${context}\npublished files changed`,
          ...checkPublished(dest, hashes).problems,
          run.lines.some((l) => l.event.startsWith('prune.')) ? `${context}\nprune ran` : '',
        ].filter(Boolean),
      );
    }
    fs.rmSync(filler, { force: true });
    expect(problems, [...messages].join('\n')).toEqual([]);
    // It ran out of space at several different points before it finally fitted: the lock, the
    // estimate, the archive data, the sidecars.
    expect(failures, [...messages].join('\n')).toBeGreaterThanOrEqual(5);
    const stages = [/not even for the lock file/, /not enough space on the backup volume/, /archive had reached N \(source holds N\) when writing failed/, /no room left for its checksum and manifest/];
    for (const stage of stages) expect([...messages].some((m) => stage.test(m)), `${stage} among\n${[...messages].join('\n')}`).toBe(true);
    expect(succeededAt, `seed ${seed}: never succeeded`).toBeDefined();
    tally('3 ENOSPC at page-exact fill levels (write, fsync, sidecars)', trials, trials);
  }, 120_000);
});

describe.skipIf(skip)('out of space during restore', () => {
  let mount: string;
  let archiveDest: string;
  let archive: string;
  let tinyFiles: string;

  beforeAll(async () => {
    mount = tempDir('target-tmpfs');
    mountTmpfs(mount, '8m');
    archiveDest = tempDir('dest');
    const source = tempDir('src');
    buildSource(source, { seed: seed + 3, large: [6 * MiB], medium: { count: 16, size: 256 * 1024 }, small: { count: 30, maxSize: 2048 } });
    const made = await runJson(['backup', '--source', source, '--dest', archiveDest, '--compression', 'zstd']);
    expect(made.code, describeRun(made)).toBe(0);
    archive = made.lines.find((l) => l.event === 'backup.done')!.archive as string;
    // 2500 files of 64 bytes: 160 KB of content, which passes any estimate by size, but each file
    // takes a whole page on the volume (10 MiB), so the kernel's ENOSPC hits in the middle of staging.
    const tiny = tempDir('tiny');
    for (let i = 0; i < 2500; i++) {
      fs.mkdirSync(path.join(tiny, `d${i % 50}`), { recursive: true });
      fs.writeFileSync(path.join(tiny, `d${i % 50}`, `f${i}.txt`), `${String(i).padStart(63, '0')}\n`);
    }
    const madeTiny = await runJson(['backup', '--source', tiny, '--dest', archiveDest, '--prefix', 'tiny']);
    expect(madeTiny.code, describeRun(madeTiny)).toBe(0);
    tinyFiles = madeTiny.lines.find((l) => l.event === 'backup.done')!.archive as string;
  });
  afterAll(() => unmount(mount));

  it('fails in staging with exit 1 and leaves the current data exactly as it was', async () => {
    const trials = [
      { archive: () => archive, existing: 1 * MiB, what: 'refused by the estimate' },
      { archive: () => archive, existing: 5 * MiB, what: 'refused by the estimate' },
      { archive: () => tinyFiles, existing: 1 * MiB, what: 'ENOSPC in staging' },
      { archive: () => tinyFiles, existing: 3 * MiB, what: 'ENOSPC in staging' },
      { archive: () => tinyFiles, existing: 6 * MiB, what: 'ENOSPC in staging' },
    ];
    let passed = 0;
    for (const [i, trial] of trials.entries()) {
      const target = path.join(mount, `t${i}`);
      fs.mkdirSync(target);
      fs.writeFileSync(path.join(target, 'current.bin'), pseudoRandomBytes(seed, trial.existing, 9000 + i));
      fs.mkdirSync(path.join(target, 'keep'));
      fs.writeFileSync(path.join(target, 'keep/notes.txt'), 'the data of today\n');
      const before = targetState(target);
      const destBefore = publishedFiles(archiveDest);
      const run = await runJson(['restore', '--dest', archiveDest, '--archive', trial.archive(), '--target', target]);
      const context = `seed ${seed}, trial ${i}: ${trial.what}, target holding ${trial.existing} B on an 8 MiB volume\n${describeRun(run)}`;
      expect(run.code, context).toBe(1);
      const failure = run.lines.find((l) => l.level === 'error');
      expect(failure?.msg, context).toMatch(/space/i);
      const after = targetState(target);
      expect(stateDiff(before.tree, after.tree), context).toBe('');
      expect(Math.abs(after.rootMtimeMs - before.rootMtimeMs), context).toBeLessThanOrEqual(1);
      expect(fs.readdirSync(target).filter((n) => n.startsWith('.')), context).toEqual([]);
      expect(fs.existsSync(path.join(archiveDest, LOCK)), context).toBe(false);
      expect(archivePartials(archiveDest), context).toEqual([]);
      // No pre-restore snapshot is kept of a restore that never happened (it would push real ones out).
      expect(publishedFiles(archiveDest), context).toEqual(destBefore);
      fs.rmSync(target, { recursive: true, force: true });
      passed++;
    }
    tally('3 ENOSPC in restore (estimate and staging)', trials.length, passed);
  }, 120_000);

  it('fails when the pre-restore snapshot does not fit in DEST, before the target changes', async () => {
    // DEST is the tiny volume this time; the target (on the normal disk) holds more than it can take.
    const smallDest = path.join(mount, 'dest');
    fs.mkdirSync(smallDest);
    const src = tempDir('src2');
    fs.writeFileSync(path.join(src, 'a.txt'), 'restored content\n');
    const made = await runJson(['backup', '--source', src, '--dest', smallDest]);
    expect(made.code, describeRun(made)).toBe(0);
    const target = tempDir('target');
    buildSource(target, { seed: seed + 4, large: [12 * MiB] });
    const before = targetState(target);
    const destBefore = publishedFiles(smallDest);
    const run = await runJson(['restore', '--dest', smallDest, '--archive', 'latest', '--target', target]);
    const context = `seed ${seed}\n${describeRun(run)}`;
    expect(run.code, context).toBe(1);
    expect(run.lines.find((l) => l.level === 'error')?.msg, context).toMatch(/space on the backup volume|backup volume is full/);
    const after = targetState(target);
    expect(stateDiff(before.tree, after.tree), context).toBe('');
    expect(Math.abs(after.rootMtimeMs - before.rootMtimeMs), context).toBeLessThanOrEqual(1);
    expect(fs.readdirSync(target).filter((n) => n.startsWith('.')), context).toEqual([]);
    expect(publishedFiles(smallDest), context).toEqual(destBefore);
    expect(fs.readdirSync(smallDest).filter((n) => n.startsWith('.')), context).toEqual([]);
    tally('3 ENOSPC for the pre-restore snapshot', 1, 1);
  }, 60_000);
});
