/**
 * Results: the targets, the markdown table and results.json.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';

export type Kind = 'create' | 'verify' | 'restore' | 'read';

export interface RowResult {
  label: string;
  kind: Kind;
  /** A pvc-backup row (held to the targets) rather than a reference tool. */
  ours: boolean;
  command: string;
  status: 'ok' | 'failed';
  /** `failed (exit N: …)` when status is failed. */
  error?: string;
  /** Medians over the runs. */
  seconds?: number;
  mbPerSecond?: number;
  cpuSeconds?: number;
  peakRssKiB?: number;
  /** create rows: archive size and dataset bytes / archive bytes. */
  archiveBytes?: number;
  ratio?: number;
  /** Wall seconds of every run. */
  runs: number[];
  /** The archive a verify/restore row read, when it is not its own product. */
  input?: string;
  /** A row derived from the runner's log (write phase only): informational, no RSS. */
  derived?: boolean;
  /** Phase durations the runner logged (seconds, last run). */
  phases?: Record<string, number>;
  /** Our backup's write phase alone (median), when its log says how long verification took. */
  writeOnlySeconds?: number;
}

export interface Target {
  row: string;
  /** Speed target: row MB/s ≥ min × reference MB/s. */
  ref?: string;
  refShort?: string;
  min?: number;
  /** Memory target: peak RSS ≤ this many bytes. */
  maxRssBytes?: number;
}

export interface TargetResult {
  row: string;
  what: string;
  measured: string;
  pass: boolean | undefined;
  /** Short text for the row's "vs reference" cell. */
  cell: string;
}

/** 150 MB, MB = 10^6 bytes like everywhere in this report. */
export const RSS_LIMIT_BYTES = 150e6;

export const SPEED_TARGETS: Target[] = [
  { row: 'create: pvc-backup zstd', ref: 'create: tar | zstd -3 -T0 | tee | sha256sum', refShort: 'tar|zstd|tee|sha256sum', min: 0.85 },
  { row: 'create: pvc-backup gzip', ref: 'create: busybox tar czf', refShort: 'busybox tar czf', min: 2 },
  { row: 'verify: pvc-backup gzip', ref: 'verify: gzip -t', refShort: 'gzip -t', min: 0.9 },
  { row: 'verify: pvc-backup zstd', ref: 'verify: zstd -t', refShort: 'zstd -t', min: 0.6 },
  { row: 'restore: pvc-backup gzip', ref: 'restore: GNU tar xzf', refShort: 'GNU tar xzf', min: 1 },
  { row: 'restore: pvc-backup zstd', ref: 'restore: zstd -dc | tar xf', refShort: 'zstd -dc|tar xf', min: 1.3 },
  { row: 'restore: pvc-backup zstd', ref: 'restore: restic restore', refShort: 'restic restore', min: 1 },
];

/** Speed targets for the rows present (unless `speed` is false), plus the RSS limit on every pvc-backup row. */
export function evaluateTargets(rows: RowResult[], speed = true): TargetResult[] {
  const byLabel = new Map(rows.map((r) => [r.label, r]));
  const out: TargetResult[] = [];
  for (const t of speed ? SPEED_TARGETS : []) {
    const row = byLabel.get(t.row);
    if (!row) continue;
    const ref = byLabel.get(t.ref!);
    const what = `≥ ${t.min}× ${t.refShort}`;
    if (row.status !== 'ok' || !row.seconds) out.push({ row: t.row, what, measured: 'row failed', pass: false, cell: `${t.refShort} FAIL` });
    else if (!ref || ref.status !== 'ok' || !ref.seconds) {
      out.push({ row: t.row, what, measured: 'reference not measured', pass: undefined, cell: `${t.refShort} n/a` });
    } else {
      const ratio = ref.seconds / row.seconds;
      const pass = ratio >= t.min!;
      out.push({ row: t.row, what, measured: `${ratio.toFixed(2)}×`, pass, cell: `${ratio.toFixed(2)}× ${t.refShort} (≥ ${t.min}) ${verdict(pass)}` });
    }
  }
  for (const row of rows.filter((r) => r.ours && !r.derived)) {
    const what = `peak RSS ≤ ${RSS_LIMIT_BYTES / 1e6} MB`;
    if (row.status !== 'ok' || row.peakRssKiB === undefined) out.push({ row: row.label, what, measured: 'row failed', pass: false, cell: 'RSS FAIL' });
    else {
      const pass = row.peakRssKiB * 1024 <= RSS_LIMIT_BYTES;
      out.push({ row: row.label, what, measured: `${((row.peakRssKiB * 1024) / 1e6).toFixed(1)} MB`, pass, cell: `RSS ≤ 150 MB ${verdict(pass)}` });
    }
  }
  return out;
}

function verdict(pass: boolean | undefined): string {
  return pass === undefined ? 'n/a' : pass ? 'PASS' : 'FAIL';
}

/** The "vs reference" cell: every target of the row, e.g. `1.12× tar|zstd|tee|sha256sum (≥ 0.8) PASS`. */
function vsReference(row: RowResult, rows: RowResult[], targets: TargetResult[]): string {
  if (row.derived) {
    const t = SPEED_TARGETS.find((s) => row.label.startsWith(s.row));
    const ref = rows.find((r) => r.label === t?.ref);
    return ref?.seconds && row.seconds ? `${(ref.seconds / row.seconds).toFixed(2)}× ${t!.refShort} (info)` : '';
  }
  if (!row.ours) return row.status === 'ok' ? 'reference' : '';
  return targets.filter((t) => t.row === row.label).map((t) => t.cell).join('; ');
}

const fmt = (v: number | undefined, digits: number): string => (v === undefined || !Number.isFinite(v) ? '' : v.toFixed(digits));
const cell = (s: string): string => s.replace(/\|/g, '\\|');

export interface Header {
  profile: string;
  mode: string;
  datasetDir: string;
  datasetBytes: number;
  datasetFiles: number;
  runs: number;
  /** 1-minute load average before the first row and after the last: other work on the machine skews results. */
  loadAverage: [number, number];
}

export function renderTable(h: Header, rows: RowResult[], targets: TargetResult[]): string {
  const lines = [
    `pvc-backup bench — profile ${h.profile} (${h.mode}), ${(h.datasetBytes / 1e6).toFixed(1)} MB in ${h.datasetFiles} files (${h.datasetDir}), ` +
      `${h.runs === 1 ? '1 run' : `median of ${h.runs} runs`}, ${os.cpus().length} CPUs, load average ${h.loadAverage.map((l) => l.toFixed(2)).join(' → ')}, ` +
      'warm cache, MB = 10^6 bytes',
    '',
    '| row | seconds | MB/s | ratio | peak RSS MiB | vs reference |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of rows) {
    if (r.status === 'failed') {
      lines.push(`| ${cell(r.label)} | ${cell(r.error ?? 'failed')} | | | | ${cell(vsReference(r, rows, targets))} |`);
      continue;
    }
    const rss = r.peakRssKiB === undefined ? '' : fmt(r.peakRssKiB / 1024, 1);
    lines.push(`| ${cell(r.label)} | ${fmt(r.seconds, 2)} | ${fmt(r.mbPerSecond, 1)} | ${fmt(r.ratio, 3)} | ${rss} | ${cell(vsReference(r, rows, targets))} |`);
  }
  const inputs = rows.filter((r) => r.input);
  if (inputs.length) lines.push('', ...inputs.map((r) => `- ${r.label} read ${r.input}`));
  if (targets.length) {
    const passed = targets.filter((t) => t.pass).length;
    lines.push('', `Targets: ${passed}/${targets.length} PASS`, '', '| row | target | measured | result |', '| --- | --- | ---: | --- |');
    for (const t of targets) lines.push(`| ${cell(t.row)} | ${cell(t.what)} | ${t.measured} | ${verdict(t.pass)} |`);
  }
  return lines.join('\n') + '\n';
}

export function writeResults(file: string, h: Header, rows: RowResult[], targets: TargetResult[]): void {
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem(), node: process.version, kernel: os.release() };
  writeFileSync(file, JSON.stringify({ finishedAt: new Date().toISOString(), ...h, machine, rows, targets }, null, 2) + '\n');
}

/** One profile of `--memory`: our zstd backup, verify and restore on it. */
export interface MemoryRun {
  profile: string;
  files: number;
  bytes: number;
  rows: RowResult[];
  load: [number, number];
}

/** How much more peak RSS 300,000 files may take than 30,000. */
export const FLAT_LIMIT_MIB = 15;

/**
 * The `--memory` table: peak RSS and time per file for each profile and row, then the targets:
 * peak RSS ≤ 150 MB on every row, and flat in the number of files (files-300k within 15 MiB of files-30k).
 */
export function renderMemoryTable(runs: MemoryRun[]): string {
  const lines = [
    `pvc-backup bench --memory — ${os.cpus().length} CPUs, warm cache, MB = 10^6 bytes`,
    '',
    '| profile | files | data MB | row | seconds | µs per file | peak RSS MiB | load |',
    '| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |',
  ];
  for (const run of runs) {
    for (const r of run.rows) {
      const label = r.label.replace(/^(create|verify|restore): pvc-backup /, '$1 ');
      if (r.status !== 'ok') {
        lines.push(`| ${run.profile} | ${run.files} | ${(run.bytes / 1e6).toFixed(1)} | ${cell(label)} | ${cell(r.error ?? 'failed')} | | | |`);
        continue;
      }
      lines.push(
        `| ${run.profile} | ${run.files} | ${(run.bytes / 1e6).toFixed(1)} | ${cell(label)} | ${fmt(r.seconds, 2)} | ${fmt((r.seconds! * 1e6) / run.files, 1)} | ${fmt(r.peakRssKiB! / 1024, 1)} | ${run.load.map((l) => l.toFixed(1)).join(' → ')} |`,
      );
    }
  }
  const checks: { what: string; measured: string; pass: boolean | undefined }[] = [];
  for (const run of runs) {
    for (const r of run.rows) {
      const ok = r.status === 'ok' && r.peakRssKiB !== undefined;
      checks.push({ what: `${run.profile} ${r.label.replace(/^.*pvc-backup /, '')}: ${r.kind} peak RSS ≤ ${RSS_LIMIT_BYTES / 1e6} MB`, measured: ok ? `${((r.peakRssKiB! * 1024) / 1e6).toFixed(1)} MB` : 'failed', pass: ok ? r.peakRssKiB! * 1024 <= RSS_LIMIT_BYTES : false });
    }
  }
  const small = runs.find((r) => r.profile === 'files-30k');
  const big = runs.find((r) => r.profile === 'files-300k');
  if (small && big) {
    for (const r of big.rows) {
      const base = small.rows.find((x) => x.label === r.label);
      if (!base?.peakRssKiB || !r.peakRssKiB) continue;
      const delta = (r.peakRssKiB - base.peakRssKiB) / 1024;
      checks.push({ what: `${r.kind}: files-300k within ${FLAT_LIMIT_MIB} MiB of files-30k`, measured: `${delta >= 0 ? '+' : ''}${delta.toFixed(1)} MiB`, pass: Math.abs(delta) <= FLAT_LIMIT_MIB });
    }
  }
  lines.push('', `Targets: ${checks.filter((c) => c.pass).length}/${checks.length} PASS`, '', '| target | measured | result |', '| --- | ---: | --- |');
  for (const c of checks) lines.push(`| ${cell(c.what)} | ${c.measured} | ${verdict(c.pass)} |`);
  return lines.join('\n') + '\n';
}
