/**
 * `npm run bench:age`: the age engine side by side with the `age` CLI (Debian 1.1.1) and the
 * `age-encryption` library (typage) on the same input, in one run.
 *
 * Rows: encrypt and decrypt of one input file (default 1 GiB of random bytes, i.e. like a
 * compressed archive), file to file / file to /dev/null; the payload path alone in memory
 * (our StreamSealer, raw node:crypto ChaCha20-Poly1305 calls, and the same sealing split over
 * worker threads); and, on the bench dataset, our tar packer + zstd with and without age, and
 * the read side (zstd decode + tar parse) with and without age.
 *
 * Environment: AGE_BENCH_BYTES (input size, default 1 GiB), BENCH_PROFILE (dataset of the
 * pipeline rows, default medium), BENCH_ONLY / BENCH_SKIP (regexes on row labels),
 * BENCH_WORKDIR (default /tmp/pvc-backup-bench/age), BENCH_KEEP=1 (keep the scratch files),
 * BENCH_RUNS (default 3: every row that many times, the rows of a group in alternating order so
 * that a change in machine load hits them alike; the table shows medians).
 * Our rows and the library's report the operation's own time (process start-up, ~0.3 s for
 * node + tsx, left out); the age CLI rows are wall time (its start-up is a few ms).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROFILES, type ProfileName, defaultDatasetDir, ensureDataset } from './dataset.js';
import { cleanupMeasure, failureText, measure, shellQuote as q, turnOrder, warmCache } from './measure.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = path.join(REPO, 'node_modules/.bin/node');
const CHILD = `${q(NODE)} --import tsx ${q(path.join(REPO, 'bench/age-child.ts'))}`;

interface Row {
  label: string;
  group: 'encrypt' | 'decrypt' | 'payload' | 'pack' | 'read';
  ours: boolean;
  /** The row it is compared with (for the ratio column). */
  versus?: string[];
  command: () => string;
  /** MB counted per second: the input's bytes, or the dataset's for pipeline rows. */
  bytes: () => number;
  /** The child prints its own seconds; otherwise wall time. */
  selfTimed: boolean;
}

interface Result {
  label: string;
  group: Row['group'];
  ours: boolean;
  seconds?: number;
  mbPerSecond?: number;
  /** MB per CPU-second: less sensitive than wall time to other processes on the machine. */
  mbPerCpuSecond?: number;
  peakRssMiB?: number;
  error?: string;
  versus: string[];
}

const env = process.env;
const inputBytes = Number(env.AGE_BENCH_BYTES || 2 ** 30);
const profile = (env.BENCH_PROFILE || 'medium') as ProfileName;
const only = env.BENCH_ONLY ? new RegExp(env.BENCH_ONLY, 'i') : undefined;
const skip = env.BENCH_SKIP ? new RegExp(env.BENCH_SKIP, 'i') : undefined;
const work = path.resolve(env.BENCH_WORKDIR || '/tmp/pvc-backup-bench/age');
const keep = env.BENCH_KEEP === '1';
const runs = Number(env.BENCH_RUNS || 3);
const GROUPS: Row['group'][] = ['encrypt', 'decrypt', 'payload', 'pack', 'read'];

const file = (name: string) => path.join(work, name);
const INPUT = file('input.bin');
const KEY = file('key.txt');
let recipient = '';
let datasetDir = '';
let datasetBytes = 0;

const CLI_ENCRYPT = 'encrypt: age -e (CLI)';
const LIB_ENCRYPT = 'encrypt: age-encryption (typage)';
const CLI_DECRYPT = 'decrypt: age -d (CLI)';
const LIB_DECRYPT = 'decrypt: age-encryption (typage)';

function rows(): Row[] {
  const input = () => inputBytes;
  const dataset = () => datasetBytes;
  return [
    { label: 'encrypt: pvc-backup AgeEncryptor', group: 'encrypt', ours: true, versus: [CLI_ENCRYPT, LIB_ENCRYPT], selfTimed: true, bytes: input, command: () => `${CHILD} encrypt ${q(INPUT)} ${q(file('ours.age'))} ${recipient}` },
    { label: CLI_ENCRYPT, group: 'encrypt', ours: false, selfTimed: false, bytes: input, command: () => `age -e -r ${recipient} -o ${q(file('cli.age'))} ${q(INPUT)}` },
    { label: LIB_ENCRYPT, group: 'encrypt', ours: false, selfTimed: true, bytes: input, command: () => `${CHILD} lib-encrypt ${q(INPUT)} ${q(file('lib.age'))} ${recipient}` },
    { label: 'decrypt: pvc-backup AgeDecryptor (age CLI file)', group: 'decrypt', ours: true, versus: [CLI_DECRYPT, LIB_DECRYPT], selfTimed: true, bytes: input, command: () => `${CHILD} decrypt ${q(file('cli.age'))} ${q(KEY)}` },
    { label: CLI_DECRYPT, group: 'decrypt', ours: false, selfTimed: false, bytes: input, command: () => `age -d -i ${q(KEY)} -o /dev/null ${q(file('cli.age'))}` },
    { label: LIB_DECRYPT, group: 'decrypt', ours: false, selfTimed: true, bytes: input, command: () => `${CHILD} lib-decrypt ${q(file('cli.age'))} ${q(KEY)}` },
    { label: 'payload: StreamSealer in memory', group: 'payload', ours: true, versus: ['payload: node:crypto ChaCha20-Poly1305 alone'], selfTimed: true, bytes: input, command: () => `${CHILD} seal ${inputBytes}` },
    { label: 'payload: node:crypto ChaCha20-Poly1305 alone', group: 'payload', ours: false, selfTimed: true, bytes: input, command: () => `${CHILD} raw ${inputBytes}` },
    { label: 'payload: sealing on 2 worker threads', group: 'payload', ours: false, versus: ['payload: StreamSealer in memory'], selfTimed: true, bytes: input, command: () => `${CHILD} seal-workers ${inputBytes} 2` },
    { label: 'pipeline: pack + zstd + age', group: 'pack', ours: true, versus: ['pipeline: pack + zstd'], selfTimed: true, bytes: dataset, command: () => `${CHILD} pack ${q(datasetDir)} ${q(file('pack.tar.zst.age'))} zstd+age ${recipient}` },
    { label: 'pipeline: pack + zstd', group: 'pack', ours: true, selfTimed: true, bytes: dataset, command: () => `${CHILD} pack ${q(datasetDir)} ${q(file('pack.tar.zst'))} zstd ${recipient}` },
    { label: 'pipeline: age + zstd decode + tar parse', group: 'read', ours: true, versus: ['pipeline: zstd decode + tar parse'], selfTimed: true, bytes: dataset, command: () => `${CHILD} unpack ${q(file('pack.tar.zst.age'))} zstd+age ${q(KEY)}` },
    { label: 'pipeline: zstd decode + tar parse', group: 'read', ours: true, selfTimed: true, bytes: dataset, command: () => `${CHILD} unpack ${q(file('pack.tar.zst'))} zstd ${q(KEY)}` },
  ];
}

const log = (text: string) => process.stderr.write(`${text}\n`);

interface Sample {
  seconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
}

async function sample(row: Row): Promise<Sample | string> {
  const m = await measure(row.command());
  if (m.exitCode !== 0) return failureText(m);
  let { seconds, cpuSeconds } = m;
  if (row.selfTimed) {
    const line = m.stdout.trim().split('\n').pop() ?? '';
    ({ seconds, cpuSeconds } = JSON.parse(line) as { seconds: number; cpuSeconds: number });
  }
  return { seconds, cpuSeconds, peakRssMiB: m.peakRssKiB / 1024 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function summarize(row: Row, samples: (Sample | string)[]): Result {
  const result: Result = { label: row.label, group: row.group, ours: row.ours, versus: row.versus ?? [] };
  const error = samples.find((x): x is string => typeof x === 'string');
  if (error) return { ...result, error };
  const ok = samples as Sample[];
  const seconds = median(ok.map((x) => x.seconds));
  const cpuSeconds = median(ok.map((x) => x.cpuSeconds));
  return { ...result, seconds, mbPerSecond: row.bytes() / 1e6 / seconds, mbPerCpuSecond: row.bytes() / 1e6 / cpuSeconds, peakRssMiB: Math.max(...ok.map((x) => x.peakRssMiB)) };
}

function render(results: Result[], load: [number, number]): string {
  const byLabel = new Map(results.map((r) => [r.label, r]));
  const lines = [
    `age bench: input ${(inputBytes / 2 ** 30).toFixed(2)} GiB random bytes; pipeline rows on the ${profile} dataset (${(datasetBytes / 1e9).toFixed(2)} GB);`,
    `${os.cpus().length} cores, load average ${load[0].toFixed(2)} before, ${load[1].toFixed(2)} after; median of ${runs} runs (peak RSS: the largest); MB = 10^6 bytes per second`,
    '',
    '| row | seconds | MB/s | MB per CPU s | peak RSS MiB | vs (MB/s) |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of results) {
    if (r.error) {
      lines.push(`| ${r.label} | | | | | ${r.error} |`);
      continue;
    }
    const vs = r.versus
      .map((v) => byLabel.get(v))
      .filter((v): v is Result => !!v?.mbPerSecond)
      .map((v) => `**${(r.mbPerSecond! / v.mbPerSecond!).toFixed(2)}×** ${v.label.replace(/^\w+: /, '')}`)
      .join(', ');
    lines.push(`| ${r.label} | ${r.seconds!.toFixed(2)} | ${r.mbPerSecond!.toFixed(1)} | ${r.mbPerCpuSecond!.toFixed(1)} | ${r.peakRssMiB!.toFixed(0)} | ${vs || (r.ours ? '' : 'reference')} |`);
  }
  const target = (label: string) => byLabel.get(label)?.mbPerSecond;
  lines.push('');
  for (const label of ['encrypt: pvc-backup AgeEncryptor', 'decrypt: pvc-backup AgeDecryptor (age CLI file)']) {
    const v = target(label);
    if (v !== undefined) lines.push(`target ${label} ≥ 500 MB/s: ${v >= 500 ? 'PASS' : 'FAIL'} (${v.toFixed(0)} MB/s)`);
  }
  const pair = (a: string, b: string, what: string) => {
    const x = byLabel.get(a);
    const y = byLabel.get(b);
    if (x?.mbPerSecond && y?.mbPerSecond) {
      lines.push(
        `${what}: ${(x.mbPerSecond / y.mbPerSecond).toFixed(2)}× the speed (${(x.mbPerCpuSecond! / y.mbPerCpuSecond!).toFixed(2)}× per CPU second), ` +
          `${(x.peakRssMiB! - y.peakRssMiB!).toFixed(0)} MiB peak RSS difference`,
      );
    }
  };
  pair('pipeline: pack + zstd + age', 'pipeline: pack + zstd', 'encrypted vs plain zstd packing');
  pair('pipeline: age + zstd decode + tar parse', 'pipeline: zstd decode + tar parse', 'encrypted vs plain zstd reading');
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  const selected = rows().filter((r) => (!only || only.test(r.label)) && !(skip && skip.test(r.label)));
  rmSync(KEY, { force: true });
  execFileSync('age-keygen', ['-o', KEY], { stdio: ['ignore', 'ignore', 'pipe'] });
  recipient = execFileSync('age-keygen', ['-y', KEY]).toString().trim();
  if (!existsSync(INPUT) || statSync(INPUT).size !== inputBytes) {
    log(`writing ${inputBytes} random bytes to ${INPUT} ...`);
    execFileSync('sh', ['-c', `head -c ${inputBytes} /dev/urandom > ${q(INPUT)}`]);
  }
  if (selected.some((r) => r.group === 'pack' || r.group === 'read')) {
    datasetDir = path.resolve(env.BENCH_DATA_DIR || defaultDatasetDir(profile));
    log(`dataset ${profile} in ${datasetDir} ...`);
    const data = ensureDataset(PROFILES[profile], datasetDir);
    datasetBytes = data.bytes;
    log(`warming the page cache: ${(await warmCache(datasetDir)).seconds.toFixed(1)} s`);
  }
  await measure(`cat ${q(INPUT)} > /dev/null`);
  // Decrypt rows read the CLI's file and the read rows the packed files; when the row that
  // writes one is not selected, it runs first, untimed.
  const consumers: [string, RegExp][] = [
    [CLI_ENCRYPT, /^decrypt: /],
    ['pipeline: pack + zstd + age', /^pipeline: age \+ zstd decode/],
    ['pipeline: pack + zstd', /^pipeline: zstd decode/],
  ];
  for (const [producer, consumer] of consumers) {
    const row = rows().find((r) => r.label === producer)!;
    if (!selected.some((r) => r.label === producer) && selected.some((r) => consumer.test(r.label))) {
      log(`preparing the input of ${consumer.source}: ${producer} (untimed)`);
      const m = await measure(row.command());
      if (m.exitCode !== 0) log(`  ${failureText(m)}`);
    }
  }
  const load0 = os.loadavg()[0]!;
  const samples = new Map<Row, (Sample | string)[]>(selected.map((r) => [r, []]));
  for (let run = 0; run < runs; run++) {
    for (const group of GROUPS) {
      const members = selected.filter((r) => r.group === group);
      for (const row of turnOrder(members, run)) {
        const x = await sample(row);
        samples.get(row)!.push(x);
        log(`[run ${run + 1}/${runs}] ${row.label}: ${typeof x === 'string' ? x : `${x.seconds.toFixed(2)} s, ${(row.bytes() / 1e6 / x.seconds).toFixed(1)} MB/s, ${x.peakRssMiB.toFixed(0)} MiB`}`);
      }
    }
  }
  const results = selected.map((row) => summarize(row, samples.get(row)!));
  const table = render(results, [load0, os.loadavg()[0]!]);
  writeFileSync(file('results.md'), table);
  writeFileSync(file('results.json'), JSON.stringify({ inputBytes, profile, datasetBytes, results }, null, 2));
  process.stdout.write(`\n${table}\nresults: ${file('results.md')}\n`);
  if (!keep) for (const name of ['ours.age', 'cli.age', 'lib.age', 'pack.tar.zst.age', 'pack.tar.zst']) rmSync(file(name), { force: true });
  cleanupMeasure();
}

await main();
