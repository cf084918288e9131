import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseArchiveName } from '../../runner/store/naming.js';
import {
  archivePartials,
  buildSource,
  bulkDir,
  checkPublished,
  describeRun,
  exitStatus,
  fakeClockEnv,
  pollUntil,
  publishedFiles,
  rng,
  runJson,
  seedFor,
  sizeOf,
  startCli,
  tally,
  tempDir,
  tool,
} from './helpers.js';

/**
 * Case 8: retention safety. A failing backup (for any reason: unreadable source, empty source,
 * lock held, SIGTERM, SIGKILL, damage found while verifying its own archive) never prunes.
 * prune never deletes the only valid archive. Files that do not follow the naming pattern are
 * never touched. A clock that jumped backwards does not make the newest archive look oldest,
 * and archives of the same second are ordered the same way by list, latest and prune.
 */

const seed = seedFor('faults/retention');
const MiB = 1024 * 1024;

let root: string;
let small: string;

beforeAll(() => {
  root = bulkDir('retention', '1g');
  small = path.join(root, 'small');
  buildSource(small, { seed, small: { count: 40, maxSize: 4096 } });
});

function newDest(label: string): string {
  const dest = path.join(root, `${label}-${Math.random().toString(36).slice(2, 8)}`);
  fs.mkdirSync(dest);
  return dest;
}

async function threeArchives(dest: string): Promise<Record<string, string>> {
  for (let i = 0; i < 3; i++) {
    fs.writeFileSync(path.join(small, 'round.txt'), `round ${i}\n`);
    const made = await runJson(['backup', '--source', small, '--dest', dest]);
    expect(made.code, describeRun(made)).toBe(0);
  }
  return publishedFiles(dest);
}

function archiveOnly(files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).filter(([n]) => !n.endsWith('.manifest.json')));
}

describe('a failing backup', () => {
  it('never prunes, whatever made it fail', async () => {
    const big = path.join(root, 'big');
    buildSource(big, { seed, large: [40 * MiB, 40 * MiB] });
    // The exact size of an uncompressed archive of `big`, to catch the moment its writing ends.
    const probeDest = newDest('probe');
    const probe = await runJson(['backup', '--source', big, '--dest', probeDest, '--compression', 'none']);
    expect(probe.code, describeRun(probe)).toBe(0);
    const finalSize = probe.lines.find((l) => l.event === 'backup.done')!.bytesOut as number;

    const modes: { name: string; expected: number; run: (dest: string) => Promise<{ status: number; out: string }> }[] = [
      {
        name: 'a FIFO in the source',
        expected: 1,
        run: async (dest) => {
          const src = tempDir('fifo');
          fs.writeFileSync(path.join(src, 'a.txt'), 'a');
          tool('mkfifo', [path.join(src, 'pipe')]);
          const r = await runJson(['backup', '--source', src, '--dest', dest, '--keep-last', '1']);
          return { status: exitStatus(r), out: describeRun(r) };
        },
      },
      {
        name: 'an empty source',
        expected: 1,
        run: async (dest) => {
          const r = await runJson(['backup', '--source', tempDir('empty'), '--dest', dest, '--keep-last', '1']);
          return { status: exitStatus(r), out: describeRun(r) };
        },
      },
      {
        name: 'the lock held by a live run elsewhere',
        expected: 4,
        run: async (dest) => {
          const lock = path.join(dest, '.pvc-backup.lock');
          fs.writeFileSync(lock, JSON.stringify({ host: 'other-node', pid: 7, command: 'backup', startedAt: new Date().toISOString() }));
          const r = await runJson(['backup', '--source', small, '--dest', dest, '--keep-last', '1']);
          fs.rmSync(lock);
          return { status: exitStatus(r), out: describeRun(r) };
        },
      },
      ...(['SIGTERM', 'SIGKILL'] as const).map((signal) => ({
        name: `${signal} while writing`,
        expected: signal === 'SIGTERM' ? 143 : 137,
        run: async (dest: string) => {
          const run = startCli(['backup', '--source', big, '--dest', dest, '--compression', 'none', '--keep-last', '1']);
          await pollUntil(() => archivePartials(dest).some((n) => sizeOf(path.join(dest, n)) > finalSize / 3), run.exited);
          run.kill(signal);
          const exit = await run.exited;
          for (const p of archivePartials(dest)) fs.rmSync(path.join(dest, p)); // a killed run's leftover
          fs.rmSync(path.join(dest, '.pvc-backup.lock'), { force: true });
          return { status: exitStatus(exit), out: run.stdout() };
        },
      })),
      {
        name: 'damage found while verifying its own archive',
        expected: 3,
        run: async (dest) => {
          // The moment the partial reaches its final size the writer is done and verification is
          // about to read it back: one byte near its end is damaged on disk, as failing storage would.
          for (let attempt = 0; ; attempt++) {
            const run = startCli(['backup', '--source', big, '--dest', dest, '--compression', 'none', '--keep-last', '1']);
            let partial = '';
            const reached = await pollUntil(() => {
              partial = archivePartials(dest).map((n) => path.join(dest, n)).find((p) => sizeOf(p) >= finalSize) ?? '';
              return partial !== '';
            }, run.exited, 1);
            if (reached) {
              const fd = fs.openSync(partial, 'r+');
              const b = Buffer.alloc(1);
              fs.readSync(fd, b, 0, 1, finalSize - 4096);
              b[0]! ^= 0x40;
              fs.writeSync(fd, b, 0, 1, finalSize - 4096);
              fs.closeSync(fd);
            }
            const exit = await run.exited;
            // Too late only if the run had already verified: then it legitimately succeeded; try again.
            if (exit.code === 0 && attempt < 3) {
              const made = run.lines.find((l) => l.event === 'backup.done')!.archive as string;
              for (const f of [made, `${made}.sha256`, `${made}.manifest.json`]) fs.rmSync(path.join(dest, f), { force: true });
              continue;
            }
            return { status: exitStatus(exit), out: run.stdout() };
          }
        },
      },
    ];
    let passed = 0;
    for (const mode of modes) {
      const dest = newDest('failing');
      const before = await threeArchives(dest);
      const { status, out } = await mode.run(dest);
      const context = `seed ${seed}, ${mode.name}: status ${status}\n${out.split('\n').slice(-5).join('\n')}`;
      expect(status, context).toBe(mode.expected);
      expect(out, context).not.toMatch(/"event":"prune\./);
      // Every earlier archive and checksum is still there, byte for byte (verify may not have run; manifests are untouched too).
      expect(archiveOnly(publishedFiles(dest)), context).toEqual(archiveOnly(before));
      expect(publishedFiles(dest), context).toEqual(before);
      expect(checkPublished(dest).problems, context).toEqual([]);
      passed++;
    }
    tally('8 failing backups never prune (6 failure modes)', modes.length, passed);
  }, 180_000);
});

describe('prune', () => {
  it('never deletes the only valid archive, whatever is newer', async () => {
    type Spoil = (dest: string, name: string) => Promise<void> | void;
    const spoilers: Record<string, Spoil> = {
      truncated: (dest, name) => fs.truncateSync(path.join(dest, name), Math.floor(fs.statSync(path.join(dest, name)).size / 2)),
      'without sidecars': (dest, name) => {
        fs.rmSync(path.join(dest, `${name}.sha256`));
        fs.rmSync(path.join(dest, `${name}.manifest.json`));
      },
      'failed its last verify': async (dest, name) => {
        const fd = fs.openSync(path.join(dest, name), 'r+');
        fs.writeSync(fd, Buffer.from([0xff, 0xff, 0xff]), 0, 3, 100);
        fs.closeSync(fd);
        const v = await runJson(['verify', '--dest', dest, name]);
        expect(v.code, describeRun(v)).toBe(3);
      },
      'with an unreadable manifest': (dest, name) => fs.writeFileSync(path.join(dest, `${name}.manifest.json`), '{ broken'),
    };
    let trials = 0;
    const r = rng(seed);
    for (const keepLast of [1, 2]) {
      for (const how of [Object.keys(spoilers), ...Object.keys(spoilers).map((k) => [k, k])]) {
        const dest = newDest('only-valid');
        const made: string[] = [];
        for (let i = 0; i < 1 + how.length; i++) {
          fs.writeFileSync(path.join(small, 'round.txt'), `round ${i}\n`);
          const run = await runJson(['backup', '--source', small, '--dest', dest]);
          expect(run.code, describeRun(run)).toBe(0);
          made.push(run.lines.find((l) => l.event === 'backup.done')!.archive as string);
        }
        const [valid, ...newer] = made;
        for (const [i, name] of newer.entries()) await spoilers[how[i]!]!(dest, name);
        const label = `seed ${seed}: only ${valid} is valid, newer ones ${how.join(', ')}; --keep-last ${keepLast}`;
        const prune = r.next() < 0.5 ? await runJson(['prune', '--dest', dest, '--keep-last', String(keepLast)]) : await runJson(['prune', '--dest', dest, '--keep-last', String(keepLast), '--dry-run']);
        expect(prune.code, `${label}\n${describeRun(prune)}`).toBe(0);
        const wouldGo = prune.lines.filter((l) => l.event === 'prune.delete' || l.event === 'prune.would-delete').map((l) => l.archive);
        expect(wouldGo, `${label}\n${describeRun(prune)}`).not.toContain(valid);
        expect(fs.existsSync(path.join(dest, valid!)), label).toBe(true);
        const verify = await runJson(['verify', '--dest', dest, valid!]);
        expect(verify.code, `${label}\n${describeRun(verify)}`).toBe(0);
        trials++;
      }
    }
    tally('8 prune keeps the only valid archive', trials, trials);
  }, 120_000);

  it('never touches a file that does not follow the naming pattern', async () => {
    const dest = newDest('names');
    await threeArchives(dest);
    const r = rng(seed ^ 0x77);
    const stamp = () => `20${r.int(10, 99)}0${r.int(1, 9)}1${r.int(0, 9)}T0${r.int(0, 9)}${r.int(10, 59)}${r.int(10, 59)}Z`;
    const nearMisses = [
      () => `backup-${stamp().replace('Z', '')}.tar.gz`,
      () => `backup-${stamp()}.tgz`,
      () => `backup-${stamp()}.tar.gz.bak`,
      () => `backup-${stamp()}.tar.bz2`,
      () => `Backup-${stamp()}.tar.gz`,
      () => `backup_${stamp()}.tar.gz`,
      () => `backup-${stamp()}-0.tar.gz`,
      () => `backup-${stamp()}-01.tar.gz`,
      () => `backup-20240230T000000Z.tar.gz`,
      () => `backup-20241301T000000Z.tar`,
      () => `backup-${stamp()} .tar.gz`,
      () => `backup-${stamp()}.tar.gz~`,
      () => `.backup-${stamp()}.tar.gz`,
      () => `backup-${stamp()}.TAR.GZ`,
      () => `notes.sha256`,
      () => `README.manifest.json`,
      () => `backup-${stamp()}.tar.gz.sha256.orig`,
      () => `lost+found`,
    ];
    const planted: { name: string; kind: 'file' | 'dir' | 'symlink' }[] = [];
    for (let i = 0; i < 40; i++) {
      const name = r.pick(nearMisses)();
      if (planted.some((p) => p.name === name)) continue;
      const kind = r.pick(['file', 'file', 'file', 'dir', 'symlink'] as const);
      const abs = path.join(dest, name);
      if (kind === 'file') fs.writeFileSync(abs, `not an archive ${i}\n`);
      else if (kind === 'dir') fs.mkdirSync(abs);
      else fs.symlinkSync('/nonexistent', abs);
      planted.push({ name, kind });
    }
    // Also directories and symlinks that DO look like archives of the prefix.
    fs.mkdirSync(path.join(dest, 'backup-20000101T000000Z.tar.gz'));
    fs.symlinkSync('/etc/hostname', path.join(dest, 'backup-20000102T000000Z.tar.gz'));
    planted.push({ name: 'backup-20000101T000000Z.tar.gz', kind: 'dir' }, { name: 'backup-20000102T000000Z.tar.gz', kind: 'symlink' });
    const picture = () =>
      planted.map((p) => {
        const st = fs.lstatSync(path.join(dest, p.name));
        return `${p.name}|${p.kind}|${st.mtimeMs}|${p.kind === 'file' ? fs.readFileSync(path.join(dest, p.name), 'utf8') : p.kind === 'symlink' ? fs.readlinkSync(path.join(dest, p.name)) : ''}`;
      });
    const before = picture();
    const hostname = fs.readFileSync('/etc/hostname', 'utf8');
    let runs = 0;
    for (let i = 0; i < 3; i++) {
      fs.writeFileSync(path.join(small, 'round.txt'), `more ${i}\n`);
      const b = await runJson(['backup', '--source', small, '--dest', dest, '--keep-last', '1']);
      expect(b.code, describeRun(b)).toBe(0);
      runs++;
    }
    for (const args of [['--keep-last', '1'], ['--keep-last', '1', '--prefix', 'Backup'], ['--keep-last', '1', '--prefix', 'backup_2010']]) {
      const p = await runJson(['prune', '--dest', dest, ...args]);
      expect(p.code, describeRun(p)).toBe(0);
      runs++;
    }
    expect(picture()).toEqual(before);
    expect(fs.readFileSync('/etc/hostname', 'utf8')).toBe(hostname);
    expect(checkPublished(dest).archives.filter((a) => parseArchiveName(a.name)?.prefix === 'backup').length).toBe(1);
    tally(`8 ${planted.length} near-miss names untouched by backup --keep-last and prune`, runs, runs);
  }, 120_000);
});

describe('time', () => {
  it('a clock that jumped backwards does not make the newest archive look oldest', async () => {
    const dest = newDest('clock');
    const clockDir = tempDir('clock');
    const marker = path.join(small, 'marker.txt');
    const runAt = async (label: string, offsetMs: number, keepLast?: number) => {
      fs.writeFileSync(marker, `${label}\n`);
      const args = ['backup', '--source', small, '--dest', dest];
      if (keepLast) args.push('--keep-last', String(keepLast));
      const run = await runJson(args, { env: fakeClockEnv(clockDir, { offsetMs }) });
      expect(run.code, describeRun(run)).toBe(0);
      return run.lines.find((l) => l.event === 'backup.done')!.archive as string;
    };
    const holds = (name: string) => tool('tar', ['-xOf', path.join(dest, name), './marker.txt']).toString('utf8').trim();
    const day = 24 * 3600 * 1000;
    await runAt('one', 400 * day); // the node's clock was 400 days ahead…
    const two = await runAt('two', 0, 1); // …then corrected: this run is the newest, and keeps only 1
    expect(fs.existsSync(path.join(dest, two)), `${two} was pruned by its own run`).toBe(true);
    const list = await runJson(['list', '--dest', dest, '--json'], {});
    const listed = JSON.parse(list.stdout) as { name: string }[];
    expect(listed.map((a) => a.name)).toEqual([two]);
    expect(holds(two)).toBe('two');
    const three = await runAt('three', -2 * day, 2); // and jumped back further still
    const listed3 = (JSON.parse((await runJson(['list', '--dest', dest, '--json'])).stdout) as { name: string }[]).map((a) => a.name);
    expect(listed3).toEqual([three, two]);
    expect(holds(listed3[0]!)).toBe('three');
    const verify = await runJson(['verify', '--dest', dest, '--latest']);
    expect(verify.lines.find((l) => l.event === 'verify.ok')?.archive).toBe(three);
    tally('8 clock jumped backwards (3 runs)', 3, 3);
  }, 60_000);

  it('orders runs of the same second consistently in list, latest and prune, across compressions', async () => {
    const dest = newDest('ties');
    const clockDir = tempDir('ties');
    const env = fakeClockEnv(clockDir, { fixed: '2030-05-06T07:08:09.000Z' });
    const marker = path.join(small, 'marker.txt');
    const made: string[] = [];
    for (const [i, compression] of (['gzip', 'zstd', 'none', 'gzip'] as const).entries()) {
      fs.writeFileSync(marker, `run ${i}\n`);
      const run = await runJson(['backup', '--source', small, '--dest', dest, '--compression', compression], { env });
      expect(run.code, describeRun(run)).toBe(0);
      made.push(run.lines.find((l) => l.event === 'backup.done')!.archive as string);
    }
    // Every run got its own place in the order: the same second, a rising sequence number.
    expect(new Set(made.map((n) => n.replace(/\.tar(\.gz|\.zst)?$/, ''))).size, made.join(', ')).toBe(made.length);
    const listed = (JSON.parse((await runJson(['list', '--dest', dest, '--json'])).stdout) as { name: string }[]).map((a) => a.name);
    expect(listed).toEqual([...made].reverse());
    const prune = await runJson(['prune', '--dest', dest, '--keep-last', '1']);
    expect(prune.code, describeRun(prune)).toBe(0);
    expect(checkPublished(dest).archives.map((a) => a.name)).toEqual([made.at(-1)]);
    tally('8 same-second runs across compressions', made.length, made.length);
  }, 60_000);
});
