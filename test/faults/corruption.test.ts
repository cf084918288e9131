import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type * as ConfigModule from '../../runner/config.js';
import type * as ContextModule from '../../runner/context.js';
import type * as ErrorsModule from '../../runner/errors.js';
import type * as LogModule from '../../runner/log.js';
import type * as RestoreModule from '../../runner/commands/restore.js';
import type * as VerifyModule from '../../runner/commands/verify.js';
import { tool } from '../helpers/cli.js';
import { buildRichTree } from '../helpers/tree.js';
import { buildSource, describeRun, loadDist, rng, runJson, seedFor, sha256File, stateDiff, tally, targetState, tempDir, textLikeBytes } from './helpers.js';

/**
 * Case 6: corruption. For an archive of each compression: single bit flips at ≥100 random
 * offsets (one at a time, the archive put back after each), truncation at several points, and
 * tampered sidecars. `verify` must fail with exit 3 every single time, and `restore` must
 * refuse every one of them (exit 3) without touching the target.
 *
 * The flips run the real verify and restore commands of the built runner in-process (the CLI
 * costs ~150 ms of Node start-up per run); the exit code mapping is then checked through the
 * real CLI on a sample of the same damage.
 */

const seed = seedFor('faults/corruption');
const compressions = ['gzip', 'zstd', 'none'] as const;
type Compression = (typeof compressions)[number];
const FLIPS = 120;

let verifyMod: typeof VerifyModule;
let restoreMod: typeof RestoreModule;
let config: typeof ConfigModule;
let context: typeof ContextModule;
let errors: typeof ErrorsModule;
let logMod: typeof LogModule;

interface Made {
  compression: Compression;
  dest: string;
  name: string;
  file: string;
  /** The intact archive and sidecars, to put back after every damage. */
  pristine: { archive: Buffer; sha256: string; manifest: string };
}
const made = {} as Record<Compression, Made>;
let target: string;
let targetBefore: ReturnType<typeof targetState>;

beforeAll(async () => {
  [verifyMod, restoreMod, config, context, errors, logMod] = await Promise.all([
    loadDist<typeof VerifyModule>('runner/commands/verify.js'),
    loadDist<typeof RestoreModule>('runner/commands/restore.js'),
    loadDist<typeof ConfigModule>('runner/config.js'),
    loadDist<typeof ContextModule>('runner/context.js'),
    loadDist<typeof ErrorsModule>('runner/errors.js'),
    loadDist<typeof LogModule>('runner/log.js'),
  ]);
  // ~1.5 MB: the rich tree (long paths in pax headers, links, odd names), compressible text, random bytes.
  const source = tempDir('src');
  buildRichTree(source, { bigFileBytes: 256 * 1024 });
  const r = rng(seed);
  for (let i = 0; i < 60; i++) fs.writeFileSync(path.join(source, `text-${i}.txt`), textLikeBytes(r, r.int(0, 16 * 1024)));
  buildSource(path.join(source, 'gen'), { seed, medium: { count: 2, size: 128 * 1024 }, small: { count: 40, maxSize: 8192 } });
  for (const compression of compressions) {
    const dest = tempDir(`dest-${compression}`);
    const run = await runJson(['backup', '--source', source, '--dest', dest, '--compression', compression]);
    expect(run.code, describeRun(run)).toBe(0);
    const name = run.lines.find((l) => l.event === 'backup.done')!.archive as string;
    const file = path.join(dest, name);
    made[compression] = {
      compression,
      dest,
      name,
      file,
      pristine: {
        archive: fs.readFileSync(file),
        sha256: fs.readFileSync(`${file}.sha256`, 'utf8'),
        manifest: fs.readFileSync(`${file}.manifest.json`, 'utf8'),
      },
    };
  }
  target = tempDir('target');
  resetTarget();
  targetBefore = targetState(target);
}, 120_000);

/** The restore target's content (put back after a restore that should have been refused and was not). */
function resetTarget(): void {
  for (const name of fs.readdirSync(target)) fs.rmSync(path.join(target, name), { recursive: true, force: true });
  fs.writeFileSync(path.join(target, 'live.txt'), 'the data of today\n');
  fs.mkdirSync(path.join(target, 'sub'));
  fs.writeFileSync(path.join(target, 'sub/more.txt'), 'more\n');
  const t = new Date('2024-01-01T00:00:00Z');
  for (const p of ['live.txt', 'sub/more.txt', 'sub', '.']) fs.utimesSync(path.join(target, p), t, t);
  fs.chmodSync(target, 0o755);
}

function putBack(m: Made): void {
  fs.writeFileSync(m.file, m.pristine.archive);
  fs.writeFileSync(`${m.file}.sha256`, m.pristine.sha256);
  fs.writeFileSync(`${m.file}.manifest.json`, m.pristine.manifest);
}

function ctx() {
  return { log: logMod.memoryLogger(), cleanup: new context.Cleanup(), signal: new AbortController().signal, now: () => new Date(), version: 'test' };
}

/** Runs the real `verify --dest D NAME` in-process; returns the exit code it maps to and the message. */
async function verifyInProcess(m: Made): Promise<{ code: number; message: string }> {
  const parsed = config.parseCommandLine(['verify', '--dest', m.dest, m.name], {});
  if (parsed.kind !== 'run' || parsed.config.command !== 'verify' || parsed.config.dest === undefined) throw new Error('unexpected parse');
  try {
    await verifyMod.runVerify(parsed.config, ctx());
    return { code: 0, message: '' };
  } catch (error) {
    return { code: errors.exitCodeOf(error), message: (error as Error).message };
  }
}

/** Runs the real `restore --no-snapshot` in-process into the target; returns the exit code and message. */
async function restoreInProcess(m: Made): Promise<{ code: number; message: string }> {
  const parsed = config.parseCommandLine(['restore', '--dest', m.dest, '--archive', m.name, '--target', target, '--no-snapshot'], {});
  if (parsed.kind !== 'run' || parsed.config.command !== 'restore' || 'remote' in parsed.config) throw new Error('unexpected parse');
  const c = ctx();
  try {
    await restoreMod.runRestore(parsed.config, c);
    return { code: 0, message: '' };
  } catch (error) {
    c.cleanup.runAll();
    return { code: errors.exitCodeOf(error), message: (error as Error).message };
  }
}

/** Verify and restore must both refuse with exit 3; the target must not change. Returns the failures. */
async function expectRefused(m: Made, what: string, afterDamage: () => void): Promise<string[]> {
  const problems: string[] = [];
  const verify = await verifyInProcess(m);
  if (verify.code !== 3) problems.push(`${what}: verify exited ${verify.code}: ${verify.message}`);
  else if (!verify.message.includes(m.name)) problems.push(`${what}: verify's message does not name the archive: ${verify.message}`);
  // verify records the failure in the manifest; restore must find the damage on its own.
  putBack(m);
  afterDamage();
  const restore = await restoreInProcess(m);
  if (restore.code !== 3) problems.push(`${what}: restore exited ${restore.code}: ${restore.message}`);
  const now = targetState(target);
  if (now.tree !== targetBefore.tree) {
    problems.push(`${what}: restore changed the target: ${stateDiff(targetBefore.tree, now.tree, 3)}`);
    resetTarget();
  }
  putBack(m);
  return problems;
}

function flipBit(file: string, offset: number, bit: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, offset);
    b[0]! ^= 1 << bit;
    fs.writeSync(fd, b, 0, 1, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The SHA-256 of the tar stream the reference decoder (GNU gzip, the zstd CLI) gets from an
 * archive, or undefined when it refuses it. Some bits carry no data — gzip's header mtime and OS
 * bytes, zstd's unused header bit and a window size larger than the frame needs — so a flip
 * there leaves the archive's content as it was, and accepting it is right.
 */
function decodedDigest(file: string, compression: 'gzip' | 'zstd'): string | undefined {
  try {
    return createHash('sha256').update(tool(compression, ['-dc', file])).digest('hex');
  } catch {
    return undefined;
  }
}

/** Makes the sidecars describe the damaged file, as if the damage had happened before they were written. */
function matchSidecars(m: Made): void {
  const sha = sha256File(m.file);
  fs.writeFileSync(`${m.file}.sha256`, `${sha}  ${m.name}\n`);
  const manifest = JSON.parse(m.pristine.manifest) as { sha256: string; archiveBytes: number };
  manifest.sha256 = sha;
  manifest.archiveBytes = fs.statSync(m.file).size;
  fs.writeFileSync(`${m.file}.manifest.json`, JSON.stringify(manifest));
}

describe.each(compressions)('a %s archive', (compression) => {
  it(`fails verify (exit 3) and is refused by restore for each of ${FLIPS} single bit flips`, async () => {
    const m = made[compression];
    const r = rng(seed ^ compressions.indexOf(compression));
    const size = m.pristine.archive.length;
    const problems: string[] = [];
    for (let i = 0; i < FLIPS; i++) {
      const offset = r.int(0, size);
      const bit = r.int(0, 8);
      const damage = () => flipBit(m.file, offset, bit);
      damage();
      problems.push(...(await expectRefused(m, `seed ${seed}, flip ${i} at byte ${offset} bit ${bit} of ${size}`, damage)));
    }
    expect(problems).toEqual([]);
    // The archive put back after each flip is intact: the damage, not the harness, was detected.
    expect(await verifyInProcess(m)).toEqual({ code: 0, message: '' });
    tally(`6 bit flips, ${compression}`, FLIPS, FLIPS - problems.length);
  }, 120_000);

  if (compression !== 'none') {
    // A plain tar has no codec checksum: a flip in its block padding is only seen by the archive's
    // SHA-256, so this stricter variant (sidecars rewritten to match the damage) is for gzip and zstd.
    it('still fails with sidecars rewritten to match a flipped archive (the codec and per-file checksums catch it)', async () => {
      const m = made[compression];
      const r = rng(seed ^ 0x5a5a ^ compressions.indexOf(compression));
      const size = m.pristine.archive.length;
      const pristineContent = decodedDigest(m.file, compression);
      expect(pristineContent).toBeDefined();
      const problems: string[] = [];
      const trials = 40;
      let harmless = 0;
      for (let i = 0; i < trials; i++) {
        const offset = r.int(0, size);
        const bit = r.int(0, 8);
        const damage = () => {
          flipBit(m.file, offset, bit);
          matchSidecars(m);
        };
        damage();
        if (decodedDigest(m.file, compression) === pristineContent) {
          harmless++;
          putBack(m);
          continue;
        }
        problems.push(...(await expectRefused(m, `seed ${seed}, flip ${i} at byte ${offset} bit ${bit} (sidecars matched)`, damage)));
      }
      expect(problems).toEqual([]);
      // A harmless flip is rare (a few bits per frame header); most trials must have changed the content.
      expect(harmless).toBeLessThan(trials / 4);
      tally(`6 bit flips with matching sidecars, ${compression}`, trials - harmless, trials - harmless - problems.length);
    }, 120_000);
  }

  if (compression === 'zstd') {
    it('accepts a flip of the zstd frame header bit that carries no data, as the zstd CLI does', async () => {
      const m = made[compression];
      const pristineContent = decodedDigest(m.file, compression);
      // RFC 8878 3.1.1.1.1: bit 4 of the frame header descriptor is unused; the first frame's is byte 4.
      const damage = () => {
        flipBit(m.file, 4, 4);
        matchSidecars(m);
      };
      damage();
      try {
        expect(decodedDigest(m.file, compression)).toBe(pristineContent);
        expect(await verifyInProcess(m)).toEqual({ code: 0, message: '' });
      } finally {
        putBack(m);
      }
    });
  }

  it('fails verify and restore when truncated at any of several points, also with matching sidecars', async () => {
    const m = made[compression];
    const size = m.pristine.archive.length;
    const points = [0, 1, 10, 511, 512, 1024, Math.floor(size / 3), Math.floor(size / 2), size - 1024, size - 8, size - 4, size - 1];
    const problems: string[] = [];
    for (const point of points) {
      for (const matched of [false, true]) {
        const damage = () => {
          fs.truncateSync(m.file, point);
          if (matched) matchSidecars(m);
        };
        damage();
        problems.push(...(await expectRefused(m, `truncated to ${point} of ${size} bytes${matched ? ' (sidecars matched)' : ''}`, damage)));
      }
    }
    expect(problems).toEqual([]);
    tally(`6 truncation, ${compression}`, points.length * 2, points.length * 2 - problems.length);
  }, 120_000);
});

describe('tampered sidecars', () => {
  type Edit = (manifest: Record<string, unknown> & { files: Record<string, unknown>[] }) => unknown;
  const manifestEdits: Record<string, Edit> = {
    'one file sha256 changed': (mf) => (mf.files.find((f) => f.type === 'file' && (f.size as number) > 0)!.sha256 = '0'.repeat(64)),
    'one file size changed': (mf) => (mf.files.find((f) => f.type === 'file')!.size = 12345),
    'one path changed': (mf) => (mf.files[3]!.path = './renamed.txt'),
    'one mode changed': (mf) => (mf.files[2]!.mode = 0o777),
    'one mtime changed': (mf) => (mf.files[2]!.mtime = 1),
    'one owner changed': (mf) => (mf.files[2]!.uid = 4242),
    'one link target changed': (mf) => (mf.files.find((f) => f.type === 'symlink')!.linkTarget = '/etc/passwd'),
    'an entry removed': (mf) => mf.files.splice(5, 1),
    'an entry added': (mf) => mf.files.push({ path: './extra.txt', type: 'file', size: 1, mode: 420, mtime: 0, uid: 0, gid: 0, sha256: '0'.repeat(64) }),
    'two entries swapped': (mf) => ([mf.files[4], mf.files[5]] = [mf.files[5]!, mf.files[4]!]),
    'archive sha256 changed': (mf) => (mf.sha256 = '1'.repeat(64)),
    'archiveBytes changed': (mf) => (mf.archiveBytes = (mf.archiveBytes as number) + 1),
    'tarBytes changed': (mf) => (mf.tarBytes = (mf.tarBytes as number) + 512),
    'totalBytes changed': (mf) => (mf.totalBytes = (mf.totalBytes as number) - 1),
    'entryCount changed': (mf) => (mf.entryCount = (mf.entryCount as number) + 1),
    'files is null': (mf) => ((mf as Record<string, unknown>).files = null),
    'files is an object': (mf) => ((mf as Record<string, unknown>).files = {}),
    'files is missing': (mf) => delete (mf as Record<string, unknown>).files,
    'a file entry is null': (mf) => ((mf.files as unknown[])[3] = null),
    'a file entry is a string': (mf) => ((mf.files as unknown[])[3] = './a.txt'),
    'sizes are strings': (mf) => mf.files.forEach((f) => (f.size = String(f.size))),
  };
  const rawManifests: Record<string, (text: string) => string> = {
    'manifest is not JSON': () => 'not json {',
    'manifest truncated': (t) => t.slice(0, Math.floor(t.length / 2)),
    'manifest is an array': () => '[]',
    'manifest is a string': () => '"backup"',
    'manifest is null': () => 'null',
    'manifest is empty': () => '',
  };
  const checksumEdits: Record<string, (text: string, name: string) => string> = {
    'one hex digit changed': (t) => (t[0] === 'a' ? 'b' : 'a') + t.slice(1),
    'names another archive': (t, name) => t.replace(name, name.replace('backup-', 'other-')),
    'empty': () => '',
    'garbage': () => 'this is not a checksum\n',
    'two lines, the first wrong': (t) => `${'0'.repeat(64)}  x\n${t}`,
    'sha1 length': (t) => t.slice(24),
  };

  it('every tampered manifest or .sha256 fails verify (exit 3, naming the archive) and is refused by restore', async () => {
    const problems: string[] = [];
    let trials = 0;
    for (const compression of compressions) {
      const m = made[compression];
      for (const [what, edit] of Object.entries(manifestEdits)) {
        const damage = () => {
          const mf = JSON.parse(m.pristine.manifest);
          edit(mf);
          fs.writeFileSync(`${m.file}.manifest.json`, JSON.stringify(mf));
        };
        damage();
        trials++;
        problems.push(...(await expectRefused(m, `${compression}: manifest ${what}`, damage)));
      }
      for (const [what, edit] of Object.entries(rawManifests)) {
        const damage = () => fs.writeFileSync(`${m.file}.manifest.json`, edit(m.pristine.manifest));
        damage();
        trials++;
        problems.push(...(await expectRefused(m, `${compression}: ${what}`, damage)));
      }
      for (const [what, edit] of Object.entries(checksumEdits)) {
        const damage = () => fs.writeFileSync(`${m.file}.sha256`, edit(m.pristine.sha256, m.name));
        damage();
        trials++;
        problems.push(...(await expectRefused(m, `${compression}: .sha256 ${what}`, damage)));
      }
      for (const sidecar of ['.sha256', '.manifest.json']) {
        const damage = () => fs.rmSync(`${m.file}${sidecar}`);
        damage();
        trials++;
        problems.push(...(await expectRefused(m, `${compression}: ${sidecar} deleted`, damage)));
      }
    }
    expect(problems).toEqual([]);
    tally('6 tampered sidecars (all compressions)', trials, trials - problems.length);
  }, 120_000);
});

describe('through the CLI', () => {
  it('verify exits 3 with one error line naming the archive, restore exits 3 and leaves the target, for a sample of the damage', async () => {
    const r = rng(seed ^ 0xc1);
    let trials = 0;
    for (const compression of compressions) {
      const m = made[compression];
      const damages: [string, () => void][] = [
        ...[0, 1, 2].map((i): [string, () => void] => {
          const offset = r.int(0, m.pristine.archive.length);
          return [`flip ${i} at ${offset}`, () => flipBit(m.file, offset, r.int(0, 8))];
        }),
        ['truncated by half', () => fs.truncateSync(m.file, Math.floor(m.pristine.archive.length / 2))],
        ['manifest sha256 of a file changed', () => fs.writeFileSync(`${m.file}.manifest.json`, m.pristine.manifest.replace(/"sha256":"[0-9a-f]{64}"/, `"sha256":"${'0'.repeat(64)}"`))],
      ];
      for (const [what, damage] of damages) {
        damage();
        const verify = await runJson(['verify', '--dest', m.dest, m.name]);
        const label = `seed ${seed}, ${compression}: ${what}\n${describeRun(verify)}`;
        expect(verify.code, label).toBe(3);
        const errorsLogged = verify.lines.filter((l) => l.level === 'error');
        expect(errorsLogged.length, label).toBeGreaterThanOrEqual(1);
        expect(errorsLogged.at(-1)!.msg, label).toContain(m.name);
        putBack(m);
        damage();
        const restore = await runJson(['restore', '--dest', m.dest, '--archive', m.name, '--target', target]);
        expect(restore.code, `${label}\nrestore: ${describeRun(restore)}`).toBe(3);
        expect(targetState(target).tree, label).toBe(targetBefore.tree);
        putBack(m);
        trials++;
      }
    }
    tally('6 corruption through the CLI (exit-code mapping)', trials, trials);
  }, 120_000);
});
