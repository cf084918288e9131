import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Runs the built CLI (`dist/runner/cli.js`) as a real child process, with the same Node that
 * runs the tests (Node 24 under `npm test` / `npx vitest`).
 *
 * `npm test` builds first. When the tests are started another way (e.g. `npx vitest run
 * test/cli.test.ts`) and dist is missing or older than a runner source file, the first call
 * builds it once with `tsc -p tsconfig.build.json` (guarded by a lock directory, so parallel
 * test workers do not build at the same time).
 */

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const distDir = path.join(repoRoot, 'dist');
export const cliPath = path.join(distDir, 'runner/cli.js');
export const packageVersion = (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Extra environment variables (the child gets the test's environment minus every PVC_BACKUP_* variable, plus these). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Run as another user (only when the tests run as root). */
  uid?: number;
  gid?: number;
  timeoutMs?: number;
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const abs = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(abs));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(abs).mtimeMs);
  }
  return newest;
}

function isFresh(): boolean {
  return fs.existsSync(cliPath) && fs.statSync(cliPath).mtimeMs >= newestSource(path.join(repoRoot, 'runner'));
}

let built = false;

/** Makes sure dist/runner is built from the current sources (see the module comment). */
export function ensureBuilt(): void {
  if (built || isFresh()) {
    built = true;
    return;
  }
  const lock = path.join(repoRoot, 'node_modules/.pvc-backup-test-build.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}; remove it if no build is running`);
      execFileSync('sleep', ['0.2']);
      if (isFresh()) {
        built = true;
        return;
      }
    }
  }
  try {
    if (!isFresh()) {
      execFileSync(process.execPath, [path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
        cwd: repoRoot,
        stdio: 'inherit',
      });
    }
    built = true;
  } finally {
    fs.rmdirSync(lock);
  }
}

/** The test process's environment without any PVC_BACKUP_* variable, so settings never leak in. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('PVC_BACKUP_')) env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Runs `pvc-backup ...args` and collects its exit code and output. Never rejects on a non-zero exit. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  ensureBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd: options.cwd ?? repoRoot,
      env: cleanEnv(options.env),
      uid: options.uid,
      gid: options.gid,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 90_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
}

export interface LogLine {
  time: string;
  level: string;
  event: string;
  msg: string;
  [field: string]: unknown;
}

/** Parses every stdout line of a `--log-format json` run; throws on a line that is not JSON. */
export function jsonLines(stdout: string): LogLine[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as LogLine);
}

/** Runs a system tool (tar, busybox, zstd, …) and returns stdout; throws with stderr on failure. */
export function tool(command: string, args: readonly string[], options: { cwd?: string; input?: Buffer | string; maxBuffer?: number } = {}): Buffer {
  return execFileSync(command, args, { cwd: options.cwd, input: options.input, maxBuffer: options.maxBuffer ?? 256 * 1024 * 1024, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs a shell pipeline (for `zstd -dc … | busybox tar x`). Arguments must be quoted by the caller with `shq`. */
export function shell(script: string, options: { cwd?: string } = {}): Buffer {
  return execFileSync('sh', ['-c', script], { cwd: options.cwd, maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Single-quotes a string for sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The archive (not the sidecars) files in a backup directory, sorted. */
export function archivesIn(dest: string): string[] {
  return fs
    .readdirSync(dest)
    .filter((n) => /\.tar(\.gz|\.zst)?$/.test(n))
    .sort();
}

/** Debian's strace is installed (scripts/setup.sh): the tests that trace or inject system calls run. */
export const hasStrace = spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;

/** The paths GNU tar lists in an archive (compression detected by tar), in archive order. */
export function tarList(file: string): string[] {
  const out = tool('tar', ['-t', '--quoting-style=literal', '-f', file]).toString('utf8');
  return out.split('\n').filter((l) => l !== '');
}
