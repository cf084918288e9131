/**
 * Timing and measurement of one shell command.
 *
 * Every command runs as `/usr/bin/time -f '%e %U %S %M' bash -c 'set -o pipefail; CMD'`.
 * Wall seconds come from our own monotonic clock around the spawn. Peak RSS is GNU time's
 * %M of the bash process: on Linux, wait4() reports the largest maxrss among the process
 * and all descendants it reaped, so for a pipeline (`tar | zstd | tee`) or for our runner
 * and the children it spawns this is the RSS of the largest single process, not a sum.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Measurement {
  exitCode: number;
  /** Wall-clock seconds, start of spawn to exit. */
  seconds: number;
  /** user + system CPU seconds of the whole process tree. */
  cpuSeconds: number;
  /** Max RSS of the largest single process in the tree, KiB. */
  peakRssKiB: number;
  stdout: string;
  stderr: string;
}

const timeDir = mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-bench-time-'));
let timeFiles = 0;

/** Runs `command` with bash (pipefail on) under GNU time. Never throws for a failing command. */
export function measure(command: string, cwd?: string): Promise<Measurement> {
  const timeFile = path.join(timeDir, `${++timeFiles}.txt`);
  const args = ['-f', '%e %U %S %M', '-o', timeFile, 'bash', '-c', `set -o pipefail; ${command}`];
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn('/usr/bin/time', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const finish = (exitCode: number, extraError = ''): void => {
      const seconds = (performance.now() - started) / 1000;
      const { cpuSeconds, peakRssKiB } = readTimeFile(timeFile);
      const stderr = Buffer.concat(err).toString('utf8') + extraError;
      resolve({ exitCode, seconds, cpuSeconds, peakRssKiB, stdout: Buffer.concat(out).toString('utf8'), stderr });
    };
    child.on('error', (e) => finish(127, `${e.message}\n`));
    child.on('close', (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
}

function readTimeFile(file: string): { cpuSeconds: number; peakRssKiB: number } {
  try {
    // The last line holds the format; a failing command adds "Command exited with non-zero status N" before it.
    const last = readFileSync(file, 'utf8').trim().split('\n').pop() ?? '';
    const [, user, sys, rss] = last.split(' ').map(Number);
    return { cpuSeconds: (user ?? NaN) + (sys ?? NaN), peakRssKiB: rss ?? NaN };
  } catch {
    return { cpuSeconds: NaN, peakRssKiB: NaN };
  } finally {
    rmSync(file, { force: true });
  }
}

const ERROR_WORDS = /\b(error|cannot|can't|not found|no such|fatal|usage|invalid|unknown|refus|denied|failed)/i;

/**
 * `failed (exit N: message)`: the most telling line of stderr (else stdout) — the first one
 * that reads like an error, else the first line. JSON log lines give their message field.
 */
export function failureText(m: Pick<Measurement, 'exitCode' | 'stdout' | 'stderr'>): string {
  return `failed (exit ${m.exitCode}: ${firstErrorLine(m.stderr) ?? firstErrorLine(m.stdout) ?? 'no output'})`;
}

function firstErrorLine(text: string): string | undefined {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const raw = lines.find((l) => ERROR_WORDS.test(l)) ?? lines[0];
  const line = raw === undefined ? undefined : messageOf(raw);
  return line === undefined ? undefined : line.length > 140 ? `${line.slice(0, 137)}...` : line;
}

function messageOf(line: string): string {
  const obj = parseJsonObject(line);
  if (!obj) return line;
  const msg = [obj.error, obj.msg, obj.message].find((v) => typeof v === 'string');
  return typeof msg === 'string' ? msg : line;
}

function parseJsonObject(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Phase durations (seconds) found in JSON log lines. Understood shapes:
 * `{"phase":"write","durationMs":1234}` (also `seconds`, `durationSeconds`, `elapsedMs`, `ms`,
 * and `event`/`msg` naming the phase), and `{"phases":{"write":1.2,"verify":0.8}}` (seconds;
 * `phasesMs` for milliseconds).
 */
export function logPhases(stdout: string): Record<string, number> {
  const phases: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const obj = parseJsonObject(line.trim());
    if (!obj) continue;
    for (const [key, scale] of [['phases', 1], ['phasesMs', 1000]] as const) {
      const table = obj[key];
      if (table && typeof table === 'object') {
        for (const [name, v] of Object.entries(table)) if (typeof v === 'number') phases[name] = v / scale;
      }
    }
    const name = [obj.phase, obj.event, obj.msg, obj.message].find((v) => typeof v === 'string') as string | undefined;
    const seconds = durationOf(obj);
    if (name && seconds !== undefined && (typeof obj.phase === 'string' || PHASE_WORDS.test(name))) phases[name] = seconds;
  }
  return phases;
}

const PHASE_WORDS = /write|written|pack|stream|compress|verif|extract|restor/i;

function durationOf(obj: Record<string, unknown>): number | undefined {
  for (const [key, scale] of [['durationSeconds', 1], ['seconds', 1], ['elapsedSeconds', 1], ['durationMs', 1000], ['elapsedMs', 1000], ['ms', 1000], ['duration', 1]] as const) {
    const v = obj[key];
    if (typeof v === 'number' && Number.isFinite(v)) return v / scale;
  }
  return undefined;
}

/** Write-only seconds of a backup: its write phase, else the total minus its verify phase. */
export function writeOnlySeconds(phases: Record<string, number>, totalSeconds: number): number | undefined {
  const entries = Object.entries(phases);
  const write = entries.find(([k]) => /write|written|pack|stream|compress/i.test(k) && !/verif/i.test(k));
  if (write) return write[1];
  const verify = entries.find(([k]) => /verif/i.test(k));
  return verify && verify[1] < totalSeconds ? totalSeconds - verify[1] : undefined;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Reads every byte of the dataset once so that all rows run with a warm page cache. */
export async function warmCache(dir: string): Promise<Measurement> {
  return measure(`tar cf - -C ${shellQuote(dir)} . | cat > /dev/null`);
}

/**
 * This VM pays ~3 s/GiB when it touches guest RAM that has been free for more than a few
 * seconds (free page reporting, measured in docs/bench.md). Touching it just before the dataset
 * is read into the page cache keeps that cost out of the read; the rows after it pay it alike.
 */
export async function pretouchRam(bytes: number): Promise<Measurement> {
  const chunks = Math.ceil(bytes / (64 * 1024 * 1024));
  const code = `const a=[];for(let i=0;i<${chunks};i++)a.push(Buffer.allocUnsafe(64*1024*1024).fill(i&255));`;
  return measure(`${shellQuote(process.execPath)} -e ${shellQuote(code)}`);
}

/**
 * The order of rows that take turns, in run `run` (from 0): reversed every other run, so that no
 * row always runs first or last and a drift of the machine over the runs evens out.
 */
export function turnOrder<T>(rows: readonly T[], run: number): T[] {
  return run % 2 ? [...rows].reverse() : [...rows];
}

export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function cleanupMeasure(): void {
  rmSync(timeDir, { recursive: true, force: true });
}
