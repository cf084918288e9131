import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll } from 'vitest';
import { parseArchiveName } from '../../runner/store/naming.js';
import { type LogLine, cleanEnv, cliPath, distDir, ensureBuilt } from '../helpers/cli.js';
import { exactState, sha256File } from '../helpers/tree.js';

export { sha256File };

/**
 * Shared machinery of the fault-injection suite (test/faults): the built CLI as real child
 * processes that can be killed with real signals, seeded randomness (every failure message
 * carries the seed), deterministic source trees, and the invariants every case checks on a
 * backup directory.
 */

export { type LogLine, archivesIn, cliPath, distDir, ensureBuilt, hasStrace, jsonLines, tool, tarList, shell, shq } from '../helpers/cli.js';

export const isRoot = process.getuid?.() === 0;

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/**
 * The seed of one test file: PVC_FAULT_SEED when set (to replay a failure), otherwise a fixed
 * seed derived from the file's label, so every run of the suite is the same run.
 */
export function seedFor(label: string): number {
  const fromEnv = process.env.PVC_FAULT_SEED;
  if (fromEnv !== undefined && fromEnv !== '') return Number(fromEnv) >>> 0;
  return createHash('sha256').update(label).digest().readUInt32LE(0);
}

export interface Rng {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi). */
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  shuffle<T>(items: readonly T[]): T[];
}

/** mulberry32: small, fast, good enough to place faults; reproducible from its seed. */
export function rng(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo));
  return {
    seed,
    next,
    int,
    pick: (items) => items[int(0, items.length)]!,
    shuffle: (items) => {
      const out = [...items];
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(0, i + 1);
        [out[i], out[j]] = [out[j]!, out[i]!];
      }
      return out;
    },
  };
}

/** Deterministic incompressible bytes (AES-128-CTR of zeros keyed by the seed): fast for hundreds of MiB. */
export function pseudoRandomBytes(seed: number, length: number, stream = 0): Buffer {
  const key = createHash('sha256').update(`key:${seed}`).digest().subarray(0, 16);
  const iv = createHash('sha256').update(`iv:${seed}:${stream}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  return cipher.update(Buffer.alloc(length));
}

/** Deterministic text-like bytes that compress about 3:1. */
export function textLikeBytes(r: Rng, length: number): Buffer {
  const words = ['backup', 'volume', 'archive', 'kubernetes', 'pod', 'claim', 'tar', 'zstd', 'gzip', 'lock', 'data', 'row', 'index'];
  const parts: string[] = [];
  let size = 0;
  while (size < length) {
    const w = `${r.pick(words)}-${r.int(0, 100000)} `;
    parts.push(w);
    size += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, length);
}

// ---------------------------------------------------------------------------------------------
// Temporary directories and mounts

const tempRoots: string[] = [];
const mounts: string[] = [];

afterAll(() => {
  for (const dir of [...mounts].reverse()) unmount(dir);
  for (const dir of tempRoots.splice(0)) {
    makeWritable(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A fresh directory under the OS temp dir, removed (with everything mounted in it unmounted) after the file. */
export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pvc-faults-${label}-`));
  fs.chmodSync(dir, 0o755);
  tempRoots.push(dir);
  return dir;
}

/** Gives the owner back rwx on every directory below `dir`, so tests that chmod 000 can be cleaned up. */
export function makeWritable(dir: string): void {
  const visit = (d: string) => {
    try {
      fs.chmodSync(d, 0o755);
    } catch {
      return;
    }
    let names: string[];
    try {
      names = fs.readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n);
      let st;
      try {
        st = fs.lstatSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) visit(p);
    }
  };
  visit(dir);
}

/** Mounts a tmpfs of `size` (e.g. '8m') on `dir`; unmounted after the file even when a test fails. Root only. */
export function mountTmpfs(dir: string, size: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  mounts.push(dir);
}

/** Bind-mounts `from` on `at`; unmounted after the file even when a test fails. Root only. */
export function bindMount(from: string, at: string): void {
  execFileSync('mount', ['--bind', from, at]);
  mounts.push(at);
}

/** Unmounts a mount made by mountTmpfs or bindMount (anything else is left alone). */
export function unmount(dir: string): void {
  const at = mounts.indexOf(dir);
  if (at === -1) return;
  mounts.splice(at, 1);
  try {
    execFileSync('umount', [dir], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {
      // already unmounted
    }
  }
}

/**
 * A scratch directory for bulk data: a RAM-backed tmpfs of `size` when running as root (CI),
 * otherwise a plain temp dir. Keeps the heavy cases fast and independent of disk contention;
 * the kernel semantics the cases test (signals, renames, ENOSPC, partial writes) are the same.
 */
export function bulkDir(label: string, size: string): string {
  const dir = tempDir(label);
  if (isRoot) mountTmpfs(dir, size);
  return dir;
}

/** Free bytes for an unprivileged writer on the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const st = fs.statfsSync(dir);
  return st.bavail * st.bsize;
}

// ---------------------------------------------------------------------------------------------
// Source trees

export interface SourceSpec {
  seed: number;
  /** Sizes of a few large incompressible files. */
  large?: number[];
  /** Medium files (incompressible). */
  medium?: { count: number; size: number };
  /** Many small text-like files spread over nested directories. */
  small?: { count: number; maxSize: number };
}

export interface SourceInfo {
  files: string[];
  bytes: number;
}

/** Builds a deterministic tree: `big/large-N.bin`, `medium/m-N.bin`, `small/dN/fN.txt`. */
export function buildSource(root: string, spec: SourceSpec): SourceInfo {
  const r = rng(spec.seed);
  const files: string[] = [];
  let bytes = 0;
  const put = (rel: string, data: Buffer) => {
    const abs = path.join(root, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, data);
    files.push(rel);
    bytes += data.length;
  };
  (spec.large ?? []).forEach((size, i) => put(`big/large-${i}.bin`, pseudoRandomBytes(spec.seed, size, 1000 + i)));
  if (spec.medium) for (let i = 0; i < spec.medium.count; i++) put(`medium/m-${i}.bin`, pseudoRandomBytes(spec.seed, spec.medium.size, 2000 + i));
  if (spec.small) {
    for (let i = 0; i < spec.small.count; i++) put(`small/d${i % 37}/e${i % 5}/f${i}.txt`, textLikeBytes(r, r.int(0, spec.small.maxSize)));
  }
  return { files, bytes };
}

// ---------------------------------------------------------------------------------------------
// The CLI as a child process

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() when the process exited. */
  at: number;
}

export interface Running {
  readonly child: ChildProcess;
  readonly args: readonly string[];
  /** JSON log lines parsed so far (stdout; `--log-format json` is added). */
  readonly lines: LogLine[];
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<Exit>;
  /** Resolves with the first line (past or future) matching, or undefined once the process exited. */
  waitForLine(match: (line: LogLine) => boolean): Promise<LogLine | undefined>;
  kill(signal: NodeJS.Signals): void;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  uid?: number;
  gid?: number;
  cwd?: string;
  /** Hard limit: the child is SIGKILLed after this long (a hang must fail the test, not CI). */
  timeoutMs?: number;
}

/** Starts `pvc-backup ...args --log-format json` (the built CLI, with the Node running the tests). */
export function startCli(args: readonly string[], options: StartOptions = {}): Running {
  ensureBuilt();
  const fullArgs = [...args, '--log-format', 'json'];
  const child = spawn(process.execPath, [cliPath, ...fullArgs], {
    cwd: options.cwd ?? os.tmpdir(),
    env: cleanEnv(options.env),
    uid: options.uid,
    gid: options.gid,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  let out = '';
  let pending = '';
  let err = '';
  const waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine | undefined) => void }[] = [];
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    out += chunk;
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      const text = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (text === '') continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { time: '', level: 'invalid', event: 'not-json', msg: text };
      }
      lines.push(line);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.match(line)) {
          waiters[i]!.resolve(line);
          waiters.splice(i, 1);
        }
      }
    }
  });
  child.stderr!.on('data', (chunk: string) => (err += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      for (const w of waiters.splice(0)) w.resolve(undefined);
      resolve({ code, signal, at: Date.now() });
    });
  });
  return {
    child,
    args: fullArgs,
    lines,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForLine(match) {
      const found = lines.find(match);
      if (found) return Promise.resolve(found);
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(undefined);
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
    kill(signal) {
      child.kill(signal);
    },
  };
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: LogLine[];
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (JSON logs). */
export async function runJson(args: readonly string[], options: StartOptions = {}): Promise<Finished> {
  const run = startCli(args, options);
  const exit = await run.exited;
  return { code: exit.code, signal: exit.signal, lines: run.lines, stdout: run.stdout(), stderr: run.stderr() };
}

/** Runs the CLI without adding --log-format (for usage errors, which print one line on stderr). */
export function runPlain(args: readonly string[], options: StartOptions = {}): Promise<Finished> {
  ensureBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd: options.cwd ?? os.tmpdir(),
      env: cleanEnv(options.env),
      uid: options.uid,
      gid: options.gid,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 60_000,
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, lines: [], stdout: out, stderr: err }));
  });
}

/** The exit status as a shell or the kubelet reports it: the code, or 128 + n for death by signal n. */
export function exitStatus(exit: { code: number | null; signal: NodeJS.Signals | null }): number {
  if (exit.code !== null) return exit.code;
  return 128 + (exit.signal ? os.constants.signals[exit.signal] : 0);
}

/** A one-line description of a finished run for assertion messages. */
export function describeRun(run: Pick<Finished, 'code' | 'signal' | 'stdout' | 'stderr'>): string {
  const tail = run.stdout.split('\n').filter(Boolean).slice(-6).join('\n');
  return `exit ${run.code} signal ${run.signal}\nstdout (tail):\n${tail}\nstderr:\n${run.stderr}`;
}

/**
 * Polls `probe` every `intervalMs` until it returns true (resolves true) or `until` settles
 * (resolves false). Polling from the test process is what makes "kill at byte N" possible.
 */
export function pollUntil(probe: () => boolean, until: Promise<unknown>, intervalMs = 2): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (value: boolean) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      resolve(value);
    };
    const timer = setInterval(() => {
      try {
        if (probe()) finish(true);
      } catch {
        // the file may not exist yet
      }
    }, intervalMs);
    void until.then(
      () => finish(false),
      () => finish(false),
    );
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Size of a file, or -1 when it does not exist. */
export function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return -1;
  }
}

/** The hidden partial a running backup writes, if there is one (any `.<name>.partial` of an archive). */
export function archivePartials(dest: string): string[] {
  return fs.readdirSync(dest).filter((n) => n.startsWith('.') && n.endsWith('.partial'));
}

// ---------------------------------------------------------------------------------------------
// Backup directory invariants


export interface PublishedArchive {
  name: string;
  size: number;
  sha256: string;
  ino: number;
  mtimeMs: number;
}

/**
 * Every name in `dest` that looks like a complete archive (follows the naming pattern), checked
 * cheaply but completely: both sidecars exist, the `.sha256` names the archive, the file's
 * SHA-256 matches it and the manifest's, and the manifest's size matches the file. Returns the
 * archives and a list of violations (empty when the directory is consistent). Hashes are cached
 * by (name, inode, size, mtime) across calls.
 */
export function checkPublished(dest: string, cache = new Map<string, string>()): { archives: PublishedArchive[]; problems: string[] } {
  const names = fs.readdirSync(dest);
  const archives: PublishedArchive[] = [];
  const problems: string[] = [];
  for (const name of names.sort()) {
    if (!parseArchiveName(name)) continue;
    const file = path.join(dest, name);
    const st = fs.lstatSync(file);
    if (!st.isFile()) continue;
    const key = `${name}:${st.ino}:${st.size}:${st.mtimeMs}`;
    let sha = cache.get(key);
    if (!sha) {
      sha = sha256File(file);
      cache.set(key, sha);
    }
    archives.push({ name, size: st.size, sha256: sha, ino: st.ino, mtimeMs: st.mtimeMs });
    const sumFile = path.join(dest, `${name}.sha256`);
    const manifestFile = path.join(dest, `${name}.manifest.json`);
    if (!fs.existsSync(sumFile)) {
      problems.push(`${name} is visible without ${name}.sha256`);
      continue;
    }
    const sum = fs.readFileSync(sumFile, 'utf8');
    if (sum !== `${sha}  ${name}\n`) problems.push(`${name}.sha256 says ${JSON.stringify(sum)} but the file hashes to ${sha}`);
    if (!fs.existsSync(manifestFile)) {
      problems.push(`${name} is visible without ${name}.manifest.json`);
      continue;
    }
    try {
      const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as { sha256: string; archiveBytes: number; archive: string };
      if (manifest.sha256 !== sha) problems.push(`${name}: manifest sha256 ${manifest.sha256} differs from the file's ${sha}`);
      if (manifest.archiveBytes !== st.size) problems.push(`${name}: manifest says ${manifest.archiveBytes} bytes, file has ${st.size}`);
    } catch (error) {
      problems.push(`${name}: manifest unreadable: ${(error as Error).message}`);
    }
  }
  return { archives, problems };
}

/** Name → sha256 of the regular files in a directory whose names pass `filter` (default: all). */
export function fileHashes(dir: string, filter: (name: string) => boolean = () => true): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    if (!filter(name)) continue;
    const st = fs.lstatSync(path.join(dir, name));
    if (st.isFile()) out[name] = sha256File(path.join(dir, name));
  }
  return out;
}

/** Archives and sidecars of a backup directory (not hidden files), name → sha256. */
export function publishedFiles(dest: string): Record<string, string> {
  return fileHashes(dest, (n) => !n.startsWith('.'));
}

/**
 * What differs between two `exactState` pictures, in a few lines (first differences only), or
 * '' when they are equal.
 */
export function stateDiff(before: string, after: string, limit = 6): string {
  if (before === after) return '';
  type Entry = { path: string } & Record<string, unknown>;
  const a = new Map((JSON.parse(before) as Entry[]).map((e) => [e.path, e]));
  const b = new Map((JSON.parse(after) as Entry[]).map((e) => [e.path, e]));
  const out: string[] = [];
  for (const [p, e] of a) {
    const f = b.get(p);
    if (!f) out.push(`- ${p} (removed)`);
    else if (JSON.stringify(e) !== JSON.stringify(f)) {
      const keys = Object.keys({ ...e, ...f }).filter((k) => JSON.stringify(e[k]) !== JSON.stringify(f[k]));
      out.push(`~ ${p}: ${keys.map((k) => `${k} ${JSON.stringify(e[k])} -> ${JSON.stringify(f[k])}`).join(', ')}`);
    }
  }
  for (const p of b.keys()) if (!a.has(p)) out.push(`+ ${p} (added)`);
  return `${out.length} differences: ${out.slice(0, limit).join('; ')}${out.length > limit ? '; …' : ''}`;
}

/**
 * The target's picture without the target directory's own mtime, which is returned apart: restore
 * creates and removes its staging directory in the target and then puts the mtime back with
 * utimes, at millisecond precision (compared with a 1 ms tolerance).
 */
export function targetState(dir: string): { tree: string; rootMtimeMs: number } {
  const entries = JSON.parse(exactState(dir)) as { path: string; mtimeNs?: string }[];
  const root = entries.find((e) => e.path === '.')!;
  const rootMtimeMs = Number(root.mtimeNs);
  delete root.mtimeNs;
  return { tree: JSON.stringify(entries), rootMtimeMs };
}

/** Loads a module of the built runner (dist), typed like its source. */
export async function loadDist<T>(rel: string): Promise<T> {
  ensureBuilt();
  return (await import(pathToFileURL(path.join(distDir, rel)).href)) as T;
}

/**
 * A Node preload that shifts the child's clock (Date and Date.now) by FAULT_CLOCK_OFFSET_MS,
 * or freezes it at FAULT_CLOCK_FIXED (an ISO time), to run the real CLI "on another day".
 */
export function fakeClockEnv(dir: string, clock: { offsetMs?: number; fixed?: string }): Record<string, string> {
  const file = path.join(dir, 'fake-clock.mjs');
  if (!fs.existsSync(file)) {
    fs.writeFileSync(
      file,
      `const RealDate = Date;
const offset = Number(process.env.FAULT_CLOCK_OFFSET_MS || 0);
const fixed = process.env.FAULT_CLOCK_FIXED ? RealDate.parse(process.env.FAULT_CLOCK_FIXED) : undefined;
const now = () => (fixed !== undefined ? fixed : RealDate.now() + offset);
class FakeDate extends RealDate {
  constructor(...args) { if (args.length === 0) super(now()); else super(...args); }
  static now() { return now(); }
}
globalThis.Date = FakeDate;
`,
    );
  }
  return {
    NODE_OPTIONS: `--import ${pathToFileURL(file).href}`,
    FAULT_CLOCK_OFFSET_MS: clock.offsetMs === undefined ? undefined : String(clock.offsetMs),
    FAULT_CLOCK_FIXED: clock.fixed,
  } as Record<string, string>;
}

/** Prints one line of the suite's tally (case, trials, passed), collected for docs/reliability.md. */
export function tally(caseName: string, trials: number, passed: number): void {
  process.stdout.write(`[faults] ${caseName}: ${passed}/${trials} trials passed\n`);
}
