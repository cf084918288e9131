import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  buildSource,
  bulkDir,
  archivesIn,
  cliPath,
  describeRun,
  hasStrace,
  jsonLines,
  pseudoRandomBytes,
  rng,
  runJson,
  seedFor,
  sha256File,
  startCli,
  tally,
  tarList,
  tempDir,
  tool,
  unmount,
} from './helpers.js';

/**
 * Case 4: the source changes under the backup. A separate process appends to files, truncates
 * others, rewrites blocks in place, creates and deletes files, and swaps entries between file,
 * directory, symlink (and FIFO) while a backup of a ~130 MiB source runs. The archive must
 * still be a valid tar (no header/size disagreement: GNU tar lists and extracts it), verify
 * must pass, and the run must exit 0 with a warning naming every file that changed while it was
 * read. Semantics (docs/reliability.md): each file's size is fixed when it is opened; bytes
 * appended later are not archived; a file that shrank is zero-filled to that size; files
 * created after their directory was read are not archived; files that vanished are left out.
 */

const seed = seedFor('faults/changing-source');
const MiB = 1024 * 1024;

const MUTATOR = `
const fs = require('node:fs');
const path = require('node:path');
const [source, scratch, seedText, withFifos] = process.argv.slice(2);
let state = Number(seedText) >>> 0;
const rand = () => { state = (state * 1664525 + 1013904223) >>> 0; return state / 4294967296; };
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const grow = fs.readdirSync(path.join(source, 'grow')).map((n) => path.join(source, 'grow', n));
const shrink = fs.readdirSync(path.join(source, 'shrink')).map((n) => path.join(source, 'shrink', n));
const rewrite = fs.readdirSync(path.join(source, 'rewrite')).map((n) => path.join(source, 'rewrite', n));
const old = fs.readdirSync(path.join(source, 'churn')).map((n) => path.join(source, 'churn', n));
const types = fs.readdirSync(path.join(source, 'types')).map((n) => path.join(source, 'types', n));
const fifos = fs.existsSync(path.join(scratch, 'fifos')) ? fs.readdirSync(path.join(scratch, 'fifos')).map((n) => path.join(scratch, 'fifos', n)) : [];
const chunk = Buffer.alloc(1024, 0x61);
let stop = false;
process.stdin.on('data', () => (stop = true));
process.stdin.on('end', () => (stop = true));
let i = 0;
function swap(p) {
  const kind = Math.floor(rand() * (withFifos === '1' && fifos.length ? 4 : 3));
  try { fs.rmSync(p, { recursive: true, force: true }); } catch {}
  try {
    if (kind === 0) fs.writeFileSync(p, 'now a file ' + i + '\\n');
    else if (kind === 1) { fs.mkdirSync(p); fs.writeFileSync(path.join(p, 'inside.txt'), 'inside ' + i + '\\n'); }
    else if (kind === 2) fs.symlinkSync('../stable/s-0.bin', p);
    else fs.renameSync(fifos.pop(), p);
  } catch {}
}
function step() {
  i++;
  for (const f of grow) fs.appendFileSync(f, chunk);
  for (const f of shrink) { const st = fs.statSync(f); if (st.size > 1024) fs.truncateSync(f, st.size - 1024); }
  for (const f of rewrite) { const fd = fs.openSync(f, 'r+'); fs.writeSync(fd, chunk, 0, 512, Math.floor(rand() * (8 * 1024 * 1024 - 512))); fs.closeSync(fd); }
  if (old.length) { const k = Math.floor(rand() * old.length); fs.rmSync(old[k], { force: true }); old.splice(k, 1); }
  // A new file appears empty first and gets its content a moment later, as editors and databases do.
  const fresh = path.join(source, 'churn', 'new-' + i + '.txt');
  fs.writeFileSync(fresh, '');
  fs.appendFileSync(fresh, 'created while the backup ran ' + i + '\\n');
  if (i % 3 === 0) swap(types[Math.floor(rand() * types.length)]);
}
(function loop() {
  while (!stop) {
    step();
    sleep(1);
    if (i % 50 === 0) return setImmediate(loop); // let stdin be read
  }
  process.stdout.write(JSON.stringify({ iterations: i }) + '\\n');
})();
`;

interface Layout {
  source: string;
  scratch: string;
  original: Record<string, Buffer>;
}

function buildChanging(label: string, withFifos: boolean): Layout {
  const root = bulkDir(label, '1g');
  const source = path.join(root, 'src');
  fs.mkdirSync(source);
  const scratch = tempDir(`${label}-scratch`);
  const original: Record<string, Buffer> = {};
  const put = (rel: string, data: Buffer) => {
    fs.mkdirSync(path.dirname(path.join(source, rel)), { recursive: true });
    fs.writeFileSync(path.join(source, rel), data);
    original[rel] = data;
  };
  // Sorted names decide the order of reading: growing and shrinking files are spread out.
  for (let i = 0; i < 4; i++) put(`grow/g-${i}.bin`, pseudoRandomBytes(seed, 8 * MiB, 100 + i));
  for (let i = 0; i < 4; i++) put(`shrink/s-${i}.bin`, pseudoRandomBytes(seed, 16 * MiB, 200 + i));
  for (let i = 0; i < 2; i++) put(`rewrite/r-${i}.bin`, pseudoRandomBytes(seed, 8 * MiB, 300 + i));
  for (let i = 0; i < 20; i++) put(`stable/s-${i}.bin`, pseudoRandomBytes(seed, 1 * MiB, 400 + i));
  buildSource(path.join(source, 'churn'), { seed, small: { count: 1500, maxSize: 4096 } });
  // Flatten churn into one directory so the mutator can pick files by name.
  for (const rel of listFiles(path.join(source, 'churn'))) {
    const to = path.join(source, 'churn', `old-${rel.replace(/\//g, '_')}`);
    fs.renameSync(path.join(source, 'churn', rel), to);
  }
  for (const d of fs.readdirSync(path.join(source, 'churn'))) {
    const p = path.join(source, 'churn', d);
    if (fs.statSync(p).isDirectory()) fs.rmSync(p, { recursive: true });
  }
  fs.mkdirSync(path.join(source, 'types'));
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(source, 'types', `t-${String(i).padStart(2, '0')}`), `entry ${i}\n`);
  if (withFifos) {
    fs.mkdirSync(path.join(scratch, 'fifos'));
    tool('mkfifo', Array.from({ length: 150 }, (_, i) => path.join(scratch, 'fifos', `f${i}`)));
  }
  fs.writeFileSync(path.join(scratch, 'mutator.cjs'), MUTATOR);
  return { source, scratch, original };
}

function listFiles(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    const st = fs.lstatSync(path.join(root, r));
    if (st.isDirectory()) out.push(...listFiles(root, r));
    else if (st.isFile()) out.push(r);
  }
  return out;
}

interface Trial {
  compression: 'none' | 'zstd' | 'gzip';
  withFifos: boolean;
}

async function runTrial(trial: Trial, index: number): Promise<void> {
  const label = `seed ${seed}, trial ${index} (${trial.compression}${trial.withFifos ? ', with FIFOs, --skip-unreadable' : ''})`;
  const { source, scratch, original } = buildChanging(`t${index}`, trial.withFifos);
  const dest = path.join(source, '..', 'dest');
  fs.mkdirSync(dest);
  const mutator = spawn(process.execPath, [path.join(scratch, 'mutator.cjs'), source, scratch, String(seed + index), trial.withFifos ? '1' : '0'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let mutatorOut = '';
  mutator.stdout.setEncoding('utf8').on('data', (c: string) => (mutatorOut += c));
  const mutatorDone = new Promise<void>((resolve) => mutator.on('close', () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, 150)); // the mutator is busy before the backup starts
  const args = ['backup', '--source', source, '--dest', dest, '--compression', trial.compression];
  if (trial.compression !== 'none') args.push('--level', '1');
  if (trial.withFifos) args.push('--skip-unreadable');
  const backup = startCli(args, { timeoutMs: 90_000 });
  const exit = await backup.exited;
  mutator.stdin.end();
  await mutatorDone;
  const run = { code: exit.code, signal: exit.signal, stdout: backup.stdout(), stderr: backup.stderr() };
  const context = `${label}, mutator ${mutatorOut.trim()}\n${describeRun(run)}`;
  expect(exit.code, context).toBe(0);
  const iterations = (JSON.parse(mutatorOut) as { iterations: number }).iterations;
  expect(iterations, `${context}\nthe mutator barely ran`).toBeGreaterThan(100);

  const warned = new Map<string, string>();
  for (const l of backup.lines) if (l.event === 'backup.file-warning') warned.set(l.path as string, l.problem as string);
  const name = backup.lines.find((l) => l.event === 'backup.done')!.archive as string;
  const file = path.join(dest, name);
  const manifest = JSON.parse(fs.readFileSync(`${file}.manifest.json`, 'utf8')) as { files: { path: string; type: string; size: number; sha256?: string }[]; warnings: { path: string }[] };
  const inArchive = new Map(manifest.files.map((f) => [f.path, f]));

  // Every file that changed while it was read is named in a warning (log and manifest). The
  // mutator changes them every millisecond or so, but a file read completely between two of its
  // steps is a consistent version and needs no warning; at least half must have been caught.
  const changing = Object.keys(original).filter((r) => /^(grow|shrink|rewrite)\//.test(r));
  const caught = changing.filter((rel) => warned.has(`./${rel}`));
  for (const rel of caught) {
    expect(warned.get(`./${rel}`), context).toMatch(/changed while being read|shrank/);
    expect(manifest.warnings.map((w) => w.path), context).toContain(`./${rel}`);
  }
  expect(caught.length, `${context}\nwarned: ${caught.join(', ')}`).toBeGreaterThanOrEqual(changing.length / 2);
  // Files nobody touched: archived exactly, and not warned about.
  for (const rel of Object.keys(original).filter((r) => r.startsWith('stable/'))) {
    expect(warned.has(`./${rel}`), `${context}\nspurious warning for ./${rel}`).toBe(false);
    expect(inArchive.get(`./${rel}`)?.sha256, `${context}\n./${rel}`).toBe(sha256File(path.join(source, rel)));
  }
  // An old file that still exists was never deleted: it must be in the archive, exactly.
  const churn = fs.readdirSync(path.join(source, 'churn'));
  for (const n of churn.filter((x) => x.startsWith('old-'))) {
    expect(inArchive.get(`./churn/${n}`)?.sha256, `${context}\n./churn/${n} silently missing or wrong`).toBe(sha256File(path.join(source, 'churn', n)));
  }
  // Whatever was reported as vanished is indeed gone (except below types/, whose entries the
  // mutator removes and then recreates as another type: one can vanish and be back by now).
  for (const [p, problem] of warned) {
    if (/vanished/.test(problem) && !p.startsWith('./types/')) expect(fs.existsSync(path.join(source, p)), `${context}\n${p} reported vanished but exists`).toBe(false);
  }
  // A new file in the archive without a warning holds its complete content.
  for (const [p, f] of inArchive) {
    if (!p.startsWith('./churn/new-') || warned.has(p)) continue;
    expect(f.size, `${context}\n${p} archived half-written without a warning`).toBeGreaterThan(0);
  }

  // The archive is valid: verify passes, GNU tar lists and extracts it without a complaint.
  const verify = await runJson(['verify', '--dest', dest, name]);
  expect(verify.code, `${context}\nverify: ${describeRun(verify)}`).toBe(0);
  tool('tar', ['-tvf', file]);
  const out = tempDir(`t${index}-x`);
  tool('tar', ['-xf', file, '-C', out]);
  // Appended bytes are not archived: a growing file holds its original bytes and then only what
  // was appended before it was opened; without a warning, that is exactly a version it had.
  for (let i = 0; i < 4; i++) {
    const rel = `grow/g-${i}.bin`;
    const got = fs.readFileSync(path.join(out, rel));
    const orig = original[rel]!;
    expect(got.length, `${context}\n${rel}`).toBe(inArchive.get(`./${rel}`)!.size);
    expect(got.subarray(0, orig.length).equals(orig), `${context}\n${rel}: original bytes changed`).toBe(true);
    expect(got.subarray(orig.length).every((b) => b === 0x61), `${context}\n${rel}: appended bytes are not what was appended`).toBe(true);
  }
  // A shrinking file holds a prefix of its original bytes, then zeros (only with a warning).
  for (let i = 0; i < 4; i++) {
    const rel = `shrink/s-${i}.bin`;
    const got = fs.readFileSync(path.join(out, rel));
    const orig = original[rel]!;
    let k = 0;
    while (k < got.length && got[k] === orig[k]) k++;
    expect(got.subarray(k).every((b) => b === 0), `${context}\n${rel}: bytes after ${k} are neither original nor zero`).toBe(true);
    if (!warned.has(`./${rel}`)) expect(k, `${context}\n${rel}: zero-filled without a warning`).toBe(got.length);
  }
  unmount(path.dirname(source)); // free the trial's RAM-backed volume (a no-op when not mounted)
}

/**
 * The race window between listing an entry (lstat) and opening it is microseconds wide, so the
 * random swaps above rarely hit it. This child process runs the built runner's writeArchive and
 * makes the window deterministic: right after the walker's lstat of the victim returns, it
 * really replaces the victim on disk (a FIFO, a directory, a symlink, nothing, or — for a
 * directory — a file). Nothing is faked: the runner then meets the changed entry on disk.
 */
const SWAPPER = `
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
const [writeUrl, walkUrl, source, out, victimRel, kind] = process.argv.slice(2);
const { writeArchive } = await import(writeUrl);
const { excludeMatcher } = await import(walkUrl);
const { ManifestWriter } = await import(writeUrl.replace(/write\.js$/, 'manifest.js'));
const victim = path.join(source, victimRel);
const realLstat = fs.lstatSync;
let fired = false;
fs.lstatSync = function (p, ...rest) {
  const st = realLstat.call(fs, p, ...rest);
  if (!fired && String(p) === victim) {
    fired = true;
    fs.rmSync(victim, { recursive: true, force: true });
    if (kind === 'fifo') execFileSync('mkfifo', [victim]);
    else if (kind === 'dir') { fs.mkdirSync(victim); fs.writeFileSync(path.join(victim, 'x'), 'x'); }
    else if (kind === 'symlink') fs.symlinkSync('elsewhere', victim);
    else if (kind === 'file') fs.writeFileSync(victim, 'now a file');
  }
  return st;
};
try {
  const manifest = new ManifestWriter(fs.openSync('/dev/null', 'w'), { format: 2, prefix: 'x', archive: 'x', createdAt: '', source, compression: 'none', level: undefined, excludes: [], runnerVersion: '' });
  const result = await writeArchive({ source, exclude: excludeMatcher([]), skipUnreadable: false, compression: 'none', level: undefined, file: out, manifest, xattrs: false, sourceBytes: 0 });
  process.stdout.write(JSON.stringify({ ok: true, fired, warnings: result.warnings }));
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, fired, message: error.message, code: error.code }));
}
`;

describe('an entry replaced between listing and reading', () => {
  const kinds = [
    { victim: 'b-victim.bin', kind: 'fifo' },
    { victim: 'b-victim.bin', kind: 'dir' },
    { victim: 'b-victim.bin', kind: 'symlink' },
    { victim: 'b-victim.bin', kind: 'gone' },
    { victim: 'b-dir', kind: 'file' },
    { victim: 'b-dir', kind: 'gone' },
  ];
  it.each(kinds)('$victim -> $kind: no hang, exit without failure, a warning names it, the tar is valid', async ({ victim, kind }) => {
    const scratch = tempDir('swapper');
    const source = path.join(scratch, 'src');
    fs.mkdirSync(path.join(source, 'b-dir'), { recursive: true });
    fs.writeFileSync(path.join(source, 'a-first.txt'), 'first\n');
    fs.writeFileSync(path.join(source, 'b-victim.bin'), pseudoRandomBytes(seed, 100_000, 7));
    fs.writeFileSync(path.join(source, 'b-dir/inside.txt'), 'inside\n');
    fs.writeFileSync(path.join(source, 'c-last.txt'), 'last\n');
    const script = path.join(scratch, 'swapper.mjs');
    fs.writeFileSync(script, SWAPPER);
    const out = path.join(scratch, 'out.tar');
    const { distDir } = await import('./helpers.js');
    const url = (rel: string) => pathToFileURL(path.join(distDir, rel)).href;
    const child = spawn(process.execPath, [script, url('runner/archive/write.js'), url('runner/archive/walk.js'), source, out, victim, kind], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    const context = `${victim} replaced by ${kind}: exit ${code} ${signal ?? ''} (a SIGKILL here means it hung)\n${stdout}\n${stderr}`;
    expect(signal, context).toBeNull();
    const result = JSON.parse(stdout) as { ok: boolean; fired: boolean; warnings?: { path: string; problem: string }[]; message?: string };
    expect(result.fired, context).toBe(true);
    expect(result.ok, context).toBe(true);
    expect(result.warnings!.find((w) => w.path === `./${victim}`)?.problem ?? 'no warning', context).toMatch(/vanished|changed|replaced/);
    const listed = tool('tar', ['-tf', out]).toString('utf8').split('\n').filter(Boolean);
    expect(listed, context).toEqual(expect.arrayContaining(['./a-first.txt', './c-last.txt']));
    tally(`4 ${victim} replaced by ${kind} between lstat and open`, 1, 1);
  }, 30_000);
});

describe('a source that changes while it is read', () => {
  const trials: Trial[] = [
    { compression: 'none', withFifos: false },
    { compression: 'zstd', withFifos: false },
    { compression: 'gzip', withFifos: false },
    { compression: 'none', withFifos: true },
  ];
  it.each(trials.map((t, i) => ({ ...t, i })))('is archived validly, with warnings naming what changed ($compression, FIFOs: $withFifos)', async (trial) => {
    await runTrial(trial, trial.i);
    tally(`4 changing source (${trial.compression}${trial.withFifos ? ', type swaps incl. FIFOs' : ''})`, 1, 1);
  }, 150_000);

  it('never hangs or fails when a file is swapped for a FIFO, directory or symlink between listing and reading', async () => {
    // The race window is microseconds wide, so many short runs over a tree of entries that are swapped constantly.
    const r = rng(seed);
    let runs = 0;
    for (let k = 0; k < 3; k++) {
      const source = tempDir(`swap${k}-src`);
      const scratch = tempDir(`swap${k}-scratch`);
      for (const d of ['grow', 'shrink', 'rewrite', 'churn', 'stable']) fs.mkdirSync(path.join(source, d));
      fs.writeFileSync(path.join(source, 'stable/s-0.bin'), 'x');
      fs.writeFileSync(path.join(source, 'rewrite/r-0.bin'), Buffer.alloc(8 * MiB));
      fs.mkdirSync(path.join(source, 'types'));
      for (let i = 0; i < 400; i++) fs.writeFileSync(path.join(source, 'types', `t-${i}`), 'x'.repeat(r.int(0, 9000)));
      fs.mkdirSync(path.join(scratch, 'fifos'));
      tool('mkfifo', Array.from({ length: 300 }, (_, i) => path.join(scratch, 'fifos', `f${i}`)));
      fs.writeFileSync(path.join(scratch, 'mutator.cjs'), MUTATOR.replace('if (i % 3 === 0) swap', 'for (let s = 0; s < 8; s++) swap'));
      const mutator = spawn(process.execPath, [path.join(scratch, 'mutator.cjs'), source, scratch, String(seed + k), '1'], { stdio: ['pipe', 'ignore', 'inherit'] });
      const done = new Promise<void>((resolve) => mutator.on('close', () => resolve()));
      await new Promise((resolve) => setTimeout(resolve, 100));
      for (let j = 0; j < 4; j++) {
        const dest = tempDir(`swap${k}-${j}-dest`);
        const run = await runJson(['backup', '--source', source, '--dest', dest, '--compression', 'none', '--skip-unreadable'], { timeoutMs: 30_000 });
        runs++;
        expect(run.code, `seed ${seed}, swap run ${k}.${j}\n${describeRun(run)}`).toBe(0);
        fs.rmSync(dest, { recursive: true, force: true });
      }
      mutator.stdin.end();
      await done;
    }
    tally('4 type swaps between listing and reading (no hang, no failure)', runs, runs);
  }, 200_000);
});

/**
 * The backup's preflight lists the source, then checks each file for read access. A file deleted
 * between the two is a source that changes, not an unreadable file. strace makes that window
 * certain: the access check of one path gets the error a deleted file gives (and, to show the
 * check still works, the error an unreadable one gives).
 */
describe.skipIf(!hasStrace)('a file gone between the preflight listing and its access check (strace)', () => {
  const backupWithAccessError = (errno: string) => {
    const scratch = tempDir('preflight');
    const source = path.join(scratch, 'src');
    const dest = path.join(scratch, 'dest');
    fs.mkdirSync(source);
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(source, 'a.txt'), 'first\n');
    const victim = path.join(source, 'b.txt');
    fs.writeFileSync(victim, 'second\n');
    const calls = ['access', 'faccessat', 'faccessat2'].join(',');
    const args = ['-f', '-qq', '-o', path.join(scratch, 'strace.txt'), '-P', victim, '-e', `trace=${calls}`, '-e', `inject=${calls}:error=${errno}`];
    const run = spawnSync('strace', [...args, process.execPath, cliPath, 'backup', '--source', source, '--dest', dest, '--log-format', 'json'], { encoding: 'utf8', timeout: 60_000 });
    const injected = fs.readFileSync(path.join(scratch, 'strace.txt'), 'utf8').includes('(INJECTED)');
    return { run, injected, dest, context: `exit ${run.status}\n${run.stdout}\n${run.stderr}` };
  };

  it('backs up when the check meets ENOENT (the file vanished), and archives what is there', () => {
    const { run, injected, dest, context } = backupWithAccessError('ENOENT');
    expect(injected, context).toBe(true);
    expect(run.status, context).toBe(0);
    expect(jsonLines(run.stdout).some((l) => l.event === 'backup.cannot-archive'), context).toBe(false);
    const [archive] = archivesIn(dest);
    expect(tarList(path.join(dest, archive!))).toEqual(['./', './a.txt', './b.txt']);
    tally('4 a file gone between the preflight listing and its access check', 1, 1);
  });

  it('still refuses, naming the file, when the check meets EACCES', () => {
    const { run, injected, dest, context } = backupWithAccessError('EACCES');
    expect(injected, context).toBe(true);
    expect(run.status, context).toBe(1);
    expect(jsonLines(run.stdout).find((l) => l.event === 'backup.cannot-archive')?.msg, context).toMatch(/\.\/b\.txt: permission denied/);
    expect(fs.readdirSync(dest).filter((n) => !n.startsWith('.')), context).toEqual([]);
    tally('4 an unreadable file at the preflight access check', 1, 1);
  });
});
