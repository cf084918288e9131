/**
 * `npm run bench:offsite`: the runner's commands on a bucket side by side with the same
 * commands on a local directory, in one run, against a local Ceph RGW (bluestore: the data in a
 * file on disk, as the directory keeps it). Rows: a zstd backup into DEST vs straight into the
 * bucket (`backup --remote`), a restore from DEST vs `restore --remote`, and the peak RSS of a
 * bucket-only backup at each size of BENCH_OFFSITE_RSS_GIB. Every row is the real CLI in its own
 * process, timed by GNU time (peak RSS is that process's own).
 *
 * Environment: BENCH_OFFSITE_BYTES (default 1 GiB of incompressible file data: a compressed
 * archive's size is then the source's, the hardest case for the upload), BENCH_OFFSITE_RSS_GIB
 * (default "1,4"), BENCH_WORKDIR (default /tmp/pvc-backup-bench/work), BENCH_RUNS (default 1;
 * the median when more).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRgw } from '../test/helpers/rgw-server.js';
import { cleanupMeasure, failureText, measure, median, shellQuote as q, type Measurement } from './measure.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = path.join(REPO, 'node_modules/.bin/node');
const CLI = path.join(REPO, 'dist/runner/cli.js');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const bytes = Number(process.env.BENCH_OFFSITE_BYTES ?? GiB);
const rssSizes = (process.env.BENCH_OFFSITE_RSS_GIB ?? '1,4').split(',').map(Number).filter((n) => n > 0);
const runs = Number(process.env.BENCH_RUNS ?? 1);
const workdir = path.resolve(process.env.BENCH_WORKDIR ?? '/tmp/pvc-backup-bench/work');

function log(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** A source tree of `size` bytes in files of up to 256 MiB: a random MiB with a counter stamped into each copy. */
function makeSource(dir: string, size: number): string {
  const done = path.join(dir, '.complete');
  if (fs.existsSync(done)) return dir;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'tree'), { recursive: true });
  const block = randomBytes(MiB);
  let left = size;
  for (let file = 0; left > 0; file++) {
    const fd = fs.openSync(path.join(dir, 'tree', `data-${file}.bin`), 'w');
    for (let i = 0; i < 256 && left > 0; i++, left -= MiB) {
      block.writeUInt32LE(file * 256 + i, 0);
      fs.writeSync(fd, block, 0, Math.min(MiB, left));
    }
    fs.closeSync(fd);
  }
  fs.writeFileSync(done, '');
  return dir;
}

interface Row {
  label: string;
  bytes: number;
  seconds: number;
  mbPerSecond: number;
  cpuSeconds: number;
  peakRssMiB: number;
  /** Throughput relative to the row before it (bucket / directory). */
  ratio?: number;
}

async function main(): Promise<void> {
  fs.mkdirSync(workdir, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(workdir, 'offsite-'));
  const largest = Math.max(bytes, ...rssSizes.map((g) => g * GiB));
  log(`starting Ceph RGW (bluestore) ...`);
  const rgw = await startRgw({ objectstore: 'bluestore', storeGb: Math.ceil((largest * 2 + bytes * runs) / GiB) + 3 });
  const env = Object.entries(rgw.env()).map(([k, v]) => `${k}=${q(v)}`).join(' ');
  const cli = (args: string) => `${env} ${q(NODE)} ${q(CLI)} ${args} --log-format json`;
  const rows: Row[] = [];
  const loadBefore = os.loadavg()[0]!;
  let fresh = 0;
  const dir = (label: string) => {
    const d = path.join(scratch, `${label}-${fresh++}`);
    fs.mkdirSync(d, { recursive: true });
    return d;
  };
  const run = async (label: string, size: number, command: () => string, after?: (m: Measurement) => void): Promise<Row> => {
    const measured: Measurement[] = [];
    for (let n = 0; n < runs; n++) {
      const m = await measure(command());
      if (m.exitCode !== 0) throw new Error(`${label}: ${failureText(m)}`);
      after?.(m);
      measured.push(m);
    }
    const seconds = median(measured.map((m) => m.seconds));
    const row: Row = { label, bytes: size, seconds, mbPerSecond: size / 1e6 / seconds, cpuSeconds: median(measured.map((m) => m.cpuSeconds)), peakRssMiB: median(measured.map((m) => m.peakRssKiB)) / 1024 };
    log(`${label}: ${seconds.toFixed(2)} s, ${row.mbPerSecond.toFixed(0)} MB/s, ${row.peakRssMiB.toFixed(0)} MiB`);
    rows.push(row);
    return row;
  };
  try {
    const bucket = await rgw.bucket('bench');
    const source = path.join(makeSource(path.join(workdir, `offsite-source-${bytes}`), bytes), 'tree');
    await measure(`cat ${q(source)}/* > /dev/null`); // warm the page cache alike for both backup rows

    const dest = dir('dest');
    const local = await run('backup zstd: --dest (local directory)', bytes, () => `${cli(`backup --source ${q(source)} --dest ${q(dest)} --prefix bench --compression zstd`)} && sync`);
    const remote = await run('backup zstd: --remote (bucket only, streamed)', bytes, () => cli(`backup --source ${q(source)} --remote s3://${bucket}/side --prefix bench --compression zstd`));
    remote.ratio = remote.mbPerSecond / local.mbPerSecond;

    const restoreLocal = await run('restore: --dest (local archive)', bytes, () => {
      const target = dir('target');
      return `${cli(`restore --dest ${q(dest)} --prefix bench --archive latest --target ${q(target)} --no-snapshot`)} && sync`;
    });
    const restoreRemote = await run('restore: --remote (streamed from the bucket)', bytes, () => {
      const target = dir('target');
      return `${cli(`restore --remote s3://${bucket}/side --dest ${q(dir('state'))} --prefix bench --archive latest --target ${q(target)} --no-snapshot`)} && sync`;
    });
    restoreRemote.ratio = restoreRemote.mbPerSecond / restoreLocal.mbPerSecond;
    fs.rmSync(scratch, { recursive: true, force: true });
    fs.mkdirSync(scratch, { recursive: true });

    for (const gib of rssSizes) {
      const size = gib * GiB;
      const big = path.join(makeSource(path.join(workdir, `offsite-source-${size}`), size), 'tree');
      await run(`peak RSS: backup zstd --remote, ${gib} GiB`, size, () => cli(`backup --source ${q(big)} --remote s3://${bucket}/rss-${gib} --prefix bench --compression zstd`));
    }
  } finally {
    rgw.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
    cleanupMeasure();
  }
  const table = [
    `Off-site bench: ${bytes} bytes of incompressible files, RGW bluestore on 127.0.0.1, ${runs} run(s), ${os.cpus().length} cores, load average ${loadBefore.toFixed(1)} → ${os.loadavg()[0]!.toFixed(1)}`,
    '',
    '| row | bytes | seconds | MB/s | CPU s | peak RSS MiB | bucket / directory |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.label} | ${r.bytes} | ${r.seconds.toFixed(2)} | ${r.mbPerSecond.toFixed(0)} | ${r.cpuSeconds.toFixed(2)} | ${r.peakRssMiB.toFixed(0)} | ${r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}×`} |`),
    '',
    'Targets: bucket / directory ≥ 0.7× for backup and restore; peak RSS ≤ 200 MiB at every size.',
  ].join('\n');
  fs.writeFileSync(path.join(workdir, 'offsite-results.md'), table + '\n');
  fs.writeFileSync(path.join(workdir, 'offsite-results.json'), JSON.stringify({ bytes, runs, rows }, null, 2) + '\n');
  process.stdout.write(`\n${table}\n`);
}

await main();
