/**
 * `npm run bench:s3`: upload and download throughput of the bucket repository against a local
 * Ceph RGW, side by side with the directory repository writing and reading a local file — the
 * same archive, in one run. A write row copies a published archive with its sidecars from a
 * source directory (what the off-site copy of a backup does: read, hash, write, check, commit);
 * a read row streams it back and hashes it. Every row is a separate process (bench/s3-row.mjs on
 * the built runner) timed by GNU time, so peak RSS is that process's own.
 *
 * Environment: BENCH_S3_BYTES (default 1 GiB of incompressible data, like a compressed archive),
 * BENCH_S3_OBJECTSTORE (bluestore: RGW keeps the data in a file on disk, as the directory does;
 * memstore: in RAM), BENCH_WORKDIR (default /tmp/pvc-backup-bench/work), BENCH_RUNS (default 1;
 * the median when more).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRgw } from '../test/helpers/rgw-server.js';
import { cleanupMeasure, failureText, measure, median, shellQuote as q } from './measure.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = path.join(REPO, 'node_modules/.bin/node');
const ROW = path.join(REPO, 'bench/s3-row.mjs');
const NAME = 'bench-20240101T000000Z.tar.zst';
const MiB = 1024 * 1024;

const bytes = Number(process.env.BENCH_S3_BYTES ?? 1024 * MiB);
const objectstore = (process.env.BENCH_S3_OBJECTSTORE ?? 'bluestore') as 'bluestore' | 'memstore';
const runs = Number(process.env.BENCH_RUNS ?? 1);
const workdir = path.resolve(process.env.BENCH_WORKDIR ?? '/tmp/pvc-backup-bench/work');

function log(text: string): void {
  process.stderr.write(`${text}\n`);
}

/**
 * A published archive in `dir`, written once: incompressible data (a random MiB with a counter in
 * each copy, like a compressed archive) with its `.sha256` and a small manifest.
 */
function makeSource(dir: string): void {
  const file = path.join(dir, NAME);
  if (fs.existsSync(`${file}.manifest.json`) && fs.statSync(file).size === bytes) return;
  fs.mkdirSync(dir, { recursive: true });
  const block = randomBytes(MiB);
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'w');
  try {
    for (let written = 0, i = 0; written < bytes; i++) {
      block.writeUInt32BE(i, 0);
      const piece = block.subarray(0, Math.min(MiB, bytes - written));
      hash.update(piece);
      written += fs.writeSync(fd, piece);
    }
  } finally {
    fs.closeSync(fd);
  }
  const sha256 = hash.digest('hex');
  fs.writeFileSync(`${file}.sha256`, `${sha256}  ${NAME}\n`);
  fs.writeFileSync(`${file}.manifest.json`, JSON.stringify({ format: 1, archive: NAME, archiveBytes: bytes, sha256 }) + '\n');
}

interface Row {
  label: string;
  seconds: number;
  mbPerSecond: number;
  cpuSeconds: number;
  peakRssMiB: number;
}

async function main(): Promise<void> {
  fs.mkdirSync(workdir, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(workdir, 's3-'));
  const source = path.join(workdir, `s3-source-${bytes}`);
  log(`source archive: ${bytes} bytes in ${source}`);
  makeSource(source);
  await measure(`cat ${q(path.join(source, NAME))} > /dev/null`); // warm the page cache for every write row alike
  log(`starting Ceph RGW (${objectstore}) ...`);
  const rgw = await startRgw({ objectstore, storeGb: Math.ceil((bytes * (runs + 1)) / 1024 ** 3) + 3 });
  const env = Object.entries(rgw.env()).map(([k, v]) => `${k}=${q(v)}`).join(' ');
  const rows: Row[] = [];
  const loadBefore = os.loadavg()[0]!;
  try {
    const bucket = await rgw.bucket('bench');
    const row = (...args: string[]) => `${env} ${q(NODE)} ${q(ROW)} ${args.map(q).join(' ')} && sync`;
    const plan: [string, (run: number) => string][] = [
      ['write: directory (copy into a local file: partial, fsync, rename)', (n) => row('write', source, fresh(scratch, `w-${n}`), NAME)],
      ['write: bucket (upload to RGW: multipart, Content-MD5, HEAD check)', (n) => row('write', source, `s3://${bucket}/w-${n}`, NAME)],
      ['read: directory (stream the local file, hash it)', () => row('read', path.join(scratch, 'w-0'), NAME)],
      ['read: bucket (stream from RGW: ranged GETs, hash it)', () => row('read', `s3://${bucket}/w-0`, NAME)],
    ];
    for (const [label, command] of plan) {
      const measured = [];
      for (let n = 0; n < runs; n++) {
        const m = await measure(command(n));
        if (m.exitCode !== 0) throw new Error(`${label}: ${failureText(m)}`);
        const out = JSON.parse(m.stdout.trim().split('\n').pop()!) as { bytes: number };
        if (out.bytes !== bytes) throw new Error(`${label}: moved ${out.bytes} bytes, expected ${bytes}`);
        measured.push(m);
      }
      const seconds = median(measured.map((m) => m.seconds));
      const r = { label, seconds, mbPerSecond: bytes / 1e6 / seconds, cpuSeconds: median(measured.map((m) => m.cpuSeconds)), peakRssMiB: median(measured.map((m) => m.peakRssKiB)) / 1024 };
      log(`${label}: ${seconds.toFixed(2)} s, ${r.mbPerSecond.toFixed(0)} MB/s, ${r.peakRssMiB.toFixed(0)} MiB`);
      rows.push(r);
    }
  } finally {
    rgw.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
    cleanupMeasure();
  }
  const ratio = (a: Row, b: Row) => (a.mbPerSecond / b.mbPerSecond).toFixed(2);
  const table = [
    `S3 bench: ${bytes} bytes, RGW ${objectstore}, ${runs} run(s), ${os.cpus().length} cores, load average ${loadBefore.toFixed(1)} → ${os.loadavg()[0]!.toFixed(1)}`,
    '',
    '| row | seconds | MB/s | CPU s | peak RSS MiB | bucket / directory |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r, i) => `| ${r.label} | ${r.seconds.toFixed(2)} | ${r.mbPerSecond.toFixed(0)} | ${r.cpuSeconds.toFixed(2)} | ${r.peakRssMiB.toFixed(0)} | ${i % 2 === 1 ? `${ratio(r, rows[i - 1]!)}×` : ''} |`),
  ].join('\n');
  fs.writeFileSync(path.join(workdir, 's3-results.md'), table + '\n');
  fs.writeFileSync(path.join(workdir, 's3-results.json'), JSON.stringify({ bytes, objectstore, runs, rows }, null, 2) + '\n');
  process.stdout.write(`\n${table}\n`);
}

function fresh(scratch: string, name: string): string {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

await main();
