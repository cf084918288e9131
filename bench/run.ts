/**
 * `npm run bench`: pvc-backup side by side with tar/gzip/pigz/zstd, restic and borg on one dataset.
 *
 * Environment: BENCH_PROFILE (small|medium|large|files-30k|files-300k|files-3m|flat-1m|links-300k, default medium),
 * BENCH_RUNS (default 1; median when > 1, the rows that read an archive taking turns, see runRows),
 * BENCH_ONLY / BENCH_SKIP (regexes on row labels),
 * BENCH_WORKDIR (default /tmp/pvc-backup-bench/work), BENCH_DATA_DIR (default
 * /tmp/pvc-backup-bench/data-<profile>; with --memory the parent of one directory per profile),
 * BENCH_KEEP=1 (keep scratch), BENCH_PRETOUCH=0.
 * `--memory` (or BENCH_MEMORY=1): our zstd backup, verify and restore on files-30k, files-300k,
 * files-3m, flat-1m (a million files in one directory), links-300k (each file under two hard-linked
 * names) and large (BENCH_PROFILE: a comma-separated
 * list instead), for peak RSS and time per file.
 * `--sqlite`: instead, the SQLite online-copy comparison (bench/sqlite-copy.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultDatasetDir, ensureDataset, PROFILES, type DatasetInfo, type ProfileName } from './dataset.js';
import { cleanupMeasure, failureText, logPhases, measure, median, pretouchRam, shellQuote as q, turnOrder, warmCache, writeOnlySeconds, type Measurement } from './measure.js';
import { evaluateTargets, renderMemoryTable, renderTable, writeResults, type Header, type Kind, type MemoryRun, type RowResult } from './report.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = path.join(REPO, 'node_modules/.bin/node');
const CLI = path.join(REPO, 'dist/runner/cli.js');
const PREFIX = 'bench';

interface Settings {
  profile: ProfileName;
  /** --memory: the profiles measured one after another. */
  memoryProfiles: ProfileName[];
  memoryMode: boolean;
  runs: number;
  only?: RegExp;
  skip?: RegExp;
  workdir: string;
  dataDir: string;
  keep: boolean;
  pretouch: boolean;
}

function settings(): Settings {
  const env = process.env;
  const memoryMode = process.argv.includes('--memory') || env.BENCH_MEMORY === '1';
  const names = (env.BENCH_PROFILE || (memoryMode ? 'files-30k,files-300k,files-3m,flat-1m,links-300k,large' : 'medium')).split(',') as ProfileName[];
  for (const n of names) if (!PROFILES[n]) throw new Error(`BENCH_PROFILE must be one of ${Object.keys(PROFILES).join(', ')}, got "${n}"`);
  const profile = names[0]!;
  const runs = Number(env.BENCH_RUNS || 1);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`BENCH_RUNS must be a positive integer, got "${env.BENCH_RUNS}"`);
  return {
    profile,
    memoryProfiles: names,
    memoryMode,
    runs,
    only: env.BENCH_ONLY ? new RegExp(env.BENCH_ONLY, 'i') : undefined,
    skip: env.BENCH_SKIP ? new RegExp(env.BENCH_SKIP, 'i') : undefined,
    workdir: path.resolve(env.BENCH_WORKDIR || '/tmp/pvc-backup-bench/work'),
    dataDir: path.resolve(env.BENCH_DATA_DIR || (memoryMode ? path.dirname(defaultDatasetDir(profile)) : defaultDatasetDir(profile))),
    keep: env.BENCH_KEEP === '1',
    pretouch: env.BENCH_PRETOUCH !== '0',
  };
}

// ---------------------------------------------------------------- rows

/** What a create row leaves behind: the archive, and for our runner its backup directory. */
interface Product {
  file: string;
  dest: string;
  by: string;
}

interface Row {
  label: string;
  kind: Kind;
  ours: boolean;
  /** The command for one run, given a fresh empty scratch dir; a string result is a reason it cannot run. */
  prepare(dir: string): Promise<{ command: string; product?: () => Product | undefined; input?: Product } | string>;
  /** Keep the product after measuring (a later row reads it). */
  keepProduct?: boolean;
}

type Ctx = { data: DatasetInfo; settings: Settings; products: Map<string, Product>; failures: Map<string, string>; scratch: string };

const runner = (args: string): string => `${q(NODE)} ${q(CLI)} ${args} --log-format json`;

/** The archive our runner wrote into a backup directory (the newest with that extension). */
function findArchive(dest: string, ext: string): Product | undefined {
  const names = existsSync(dest) ? readdirSync(dest).filter((n) => n.startsWith(`${PREFIX}-`) && n.endsWith(ext)).sort() : [];
  const name = names.pop();
  return name ? { file: path.join(dest, name), dest, by: 'pvc-backup' } : undefined;
}

/** The age key pair of the encrypted rows (age-keygen, once per run, in the work dir). */
let ageKey: { identityFile: string; recipient: string } | undefined;
function benchAgeKey(): { identityFile: string; recipient: string } {
  if (ageKey) return ageKey;
  const identityFile = path.join(ctx().settings.workdir, 'bench-age-key.txt');
  rmSync(identityFile, { force: true });
  execFileSync('age-keygen', ['-o', identityFile], { stdio: 'ignore' });
  ageKey = { identityFile, recipient: execFileSync('age-keygen', ['-y', identityFile]).toString().trim() };
  return ageKey;
}

function oursBackup(compression: 'gzip' | 'zstd', encrypted = false): Row {
  return {
    label: `create: pvc-backup ${compression}${encrypted ? ' + age' : ''}`,
    kind: 'create',
    ours: true,
    keepProduct: true,
    prepare: async (dir) => ({
      command: `${runner(`backup --source ${q(ctx().data.dir)} --dest ${q(dir)} --prefix ${PREFIX} --compression ${compression}${encrypted ? ` --age-recipient ${benchAgeKey().recipient}` : ''}`)} && sync`,
      product: () => findArchive(dir, `${compression === 'gzip' ? '.tar.gz' : '.tar.zst'}${encrypted ? '.age' : ''}`),
    }),
  };
}

/** A port on 127.0.0.1 that nobody listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Our gzip backup with metrics, a notification and the ping all aimed at a port nobody listens on: what dead endpoints cost. */
function oursBackupDeadSignals(): Row {
  return {
    label: 'create: pvc-backup gzip, signals to dead endpoints',
    kind: 'create',
    ours: true,
    prepare: async (dir) => {
      const dead = `http://127.0.0.1:${await deadPort()}`;
      const signals = `--pushgateway-url ${dead} --notify-url ${dead}/hook --notify-on always --ping-url ${dead}/ping --namespace bench`;
      return {
        command: `${runner(`backup --source ${q(ctx().data.dir)} --dest ${q(dir)} --prefix ${PREFIX} --compression gzip ${signals}`)} && sync`,
        product: () => findArchive(dir, '.tar.gz'),
      };
    },
  };
}

function refCreate(label: string, ext: string, pipeline: (data: string, out: string) => string, keepProduct = false): Row {
  return {
    label,
    kind: 'create',
    ours: false,
    keepProduct,
    prepare: async (dir) => {
      const file = path.join(dir, `archive${ext}`);
      return { command: `${pipeline(q(ctx().data.dir), q(file))} && sync`, product: () => (existsSync(file) ? { file, dest: dir, by: label.replace(/^create: /, '') } : undefined) };
    },
  };
}

/** A verify/restore row reading the archive of the first create row in `sources` that has one. */
function reading(label: string, kind: Kind, ours: boolean, sources: string[], command: (input: Product, dir: string) => string): Row {
  return {
    label,
    kind,
    ours,
    prepare: async (dir) => {
      const input = await need(sources);
      if (typeof input === 'string') return input;
      return { command: command(input, dir), input };
    },
  };
}

/** A fresh empty extraction target inside the row's scratch dir. */
function target(dir: string): string {
  const t = path.join(dir, 'target');
  mkdirSync(t);
  return q(t);
}

/** Environment for restic and borg: repositories, caches and keys inside the row's scratch dir, nothing in $HOME. */
function peerEnv(dir: string): string {
  return [
    `RESTIC_PASSWORD=bench`,
    `RESTIC_CACHE_DIR=${q(path.join(dir, 'cache'))}`,
    `BORG_BASE_DIR=${q(path.join(dir, 'borg-base'))}`,
    'BORG_PASSPHRASE=',
    'BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes',
    'BORG_RELOCATED_REPO_ACCESS_IS_OK=yes',
  ].join(' ');
}

/** A peer tool's repository, created untimed before the timed first backup into it. */
function peerCreate(label: string, init: (repo: string) => string, create: (repo: string, data: string) => string): Row {
  return {
    label,
    kind: 'create',
    ours: false,
    keepProduct: true,
    prepare: async (dir) => {
      const repo = path.join(dir, 'repo');
      try {
        execFileSync('bash', ['-c', `${peerEnv(dir)} ${init(q(repo))}`], { stdio: 'ignore' });
      } catch {
        return `failed (cannot create the repository; is ${label.split(' ')[1]} installed?)`;
      }
      return { command: `${peerEnv(dir)} ${create(q(repo), q(ctx().data.dir))} && sync`, product: () => (existsSync(repo) ? { file: repo, dest: dir, by: label.replace(/^create: /, '') } : undefined) };
    },
  };
}

const MiB = 1024 * 1024;

/** The last regular file (smaller than `below` bytes) of one of our archives, as its manifest lists it (`./…`). */
function lastFile(p: Product, below = Infinity): string {
  const manifest = JSON.parse(readFileSync(`${p.file}.manifest.json`, 'utf8')) as { files: { path: string; type: string; size: number }[] };
  const files = manifest.files.filter((f) => f.type === 'file' && f.size < below);
  return files[files.length - 1]!.path;
}

const GZIP_SOURCES = ['create: pvc-backup gzip', 'create: GNU tar czf'];
const ZSTD_SOURCES = ['create: pvc-backup zstd', 'create: tar | zstd -3 -T0'];

function allRows(): Row[] {
  const oursVerify = (p: Product): string => runner(`verify --dest ${q(p.dest)} --prefix ${PREFIX} --latest`);
  const oursRestore = (p: Product, dir: string): string =>
    `${runner(`restore --dest ${q(p.dest)} --prefix ${PREFIX} --archive ${q(path.basename(p.file))} --target ${target(dir)} --no-snapshot`)} && sync`;
  const withIdentity = (command: string): string => command.replace(' --log-format json', ` --age-identity-file ${q(benchAgeKey().identityFile)} --log-format json`);
  return [
    oursBackup('gzip'),
    oursBackupDeadSignals(),
    oursBackup('zstd'),
    // Encrypted and plain zstd on the same data, side by side (BENCH_ONLY='pvc-backup zstd' runs just these and the plain ones).
    oursBackup('zstd', true),
    refCreate('create: busybox tar czf', '.tar.gz', (d, f) => `busybox tar czf ${f} -C ${d} .`),
    refCreate('create: GNU tar czf', '.tar.gz', (d, f) => `tar czf ${f} -C ${d} .`, true),
    refCreate('create: tar | pigz -6 -p 2', '.tar.gz', (d, f) => `tar cf - -C ${d} . | pigz -6 -p 2 > ${f}`),
    refCreate('create: tar | zstd -3 -T0 | tee | sha256sum', '.tar.zst', (d, f) => `tar cf - -C ${d} . | zstd -3 -T0 -q -c | tee ${f} | sha256sum > ${f}.sha256`),
    refCreate('create: tar | zstd -3 -T0', '.tar.zst', (d, f) => `tar cf - -C ${d} . | zstd -3 -T0 -q -c > ${f}`, true),
    reading('verify: pvc-backup gzip', 'verify', true, GZIP_SOURCES.slice(0, 1), oursVerify),
    reading('verify: gzip -t', 'verify', false, GZIP_SOURCES, (p) => `gzip -t ${q(p.file)}`),
    reading('verify: pvc-backup zstd', 'verify', true, ZSTD_SOURCES.slice(0, 1), oursVerify),
    reading('verify: zstd -t', 'verify', false, ZSTD_SOURCES, (p) => `zstd -t -q ${q(p.file)}`),
    reading('verify: pvc-backup zstd + age', 'verify', true, ['create: pvc-backup zstd + age'], (p) => withIdentity(oursVerify(p))),
    reading('restore: pvc-backup gzip', 'restore', true, GZIP_SOURCES.slice(0, 1), oursRestore),
    reading('restore: busybox tar xzf', 'restore', false, GZIP_SOURCES, (p, dir) => `busybox tar xzf ${q(p.file)} -C ${target(dir)} && sync`),
    reading('restore: GNU tar xzf', 'restore', false, GZIP_SOURCES, (p, dir) => `tar xzf ${q(p.file)} -C ${target(dir)} && sync`),
    reading('restore: pvc-backup zstd', 'restore', true, ZSTD_SOURCES.slice(0, 1), oursRestore),
    reading('restore: zstd -dc | tar xf', 'restore', false, ZSTD_SOURCES, (p, dir) => `zstd -dc -q ${q(p.file)} | tar xf - -C ${target(dir)} && sync`),
    reading('restore: pvc-backup zstd + age', 'restore', true, ['create: pvc-backup zstd + age'], (p, dir) => withIdentity(oursRestore(p, dir))),
    reading('restore: age -d | zstd -dc | tar xf', 'restore', false, ['create: pvc-backup zstd + age'], (p, dir) => `age -d -i ${q(benchAgeKey().identityFile)} ${q(p.file)} | zstd -dc -q | tar xf - -C ${target(dir)} && sync`),
    // One file out of the same zstd archive: cat starts at the frame holding it, the pipeline decodes everything before it.
    reading('read one file: pvc-backup cat (last file)', 'read', true, ZSTD_SOURCES.slice(0, 1), (p) => `${runner(`cat --dest ${q(p.dest)} --prefix ${PREFIX} ${q(path.basename(p.file))} ${q(lastFile(p))}`)} > /dev/null`),
    reading('read one file: zstd -dc | tar -xO (last file)', 'read', false, ZSTD_SOURCES.slice(0, 1), (p) => `zstd -dc -q ${q(p.file)} | tar -xOf - ${q(lastFile(p))} > /dev/null`),
    reading('read one file: pvc-backup cat (last file under 1 MiB)', 'read', true, ZSTD_SOURCES.slice(0, 1), (p) => `${runner(`cat --dest ${q(p.dest)} --prefix ${PREFIX} ${q(path.basename(p.file))} ${q(lastFile(p, MiB))}`)} > /dev/null`),
    reading('read one file: zstd -dc | tar -xO (last file under 1 MiB)', 'read', false, ZSTD_SOURCES.slice(0, 1), (p) => `zstd -dc -q ${q(p.file)} | tar -xOf - ${q(lastFile(p, MiB))} > /dev/null`),
    // The tools users pick instead (restic 0.14 and borg 1.2 as Debian ships them, default settings).
    peerCreate('create: restic backup', (r) => `restic --repo ${r} --quiet init`, (r, d) => `restic --repo ${r} --quiet backup ${d}`),
    reading('verify: restic check --read-data', 'verify', false, ['create: restic backup'], (p) => `${peerEnv(path.dirname(p.file))} restic --repo ${q(p.file)} --quiet check --read-data`),
    reading('restore: restic restore', 'restore', false, ['create: restic backup'], (p, dir) => `${peerEnv(path.dirname(p.file))} restic --repo ${q(p.file)} --quiet restore latest --target ${target(dir)} && sync`),
    peerCreate('create: borg create', (r) => `borg init --encryption=none ${r}`, (r, d) => `borg create ${r}::bench ${d}`),
    reading('verify: borg check --verify-data', 'verify', false, ['create: borg create'], (p) => `${peerEnv(path.dirname(p.file))} borg check --verify-data ${q(p.file)}`),
    reading('restore: borg extract', 'restore', false, ['create: borg create'], (p, dir) => `cd ${target(dir)} && ${peerEnv(path.dirname(p.file))} borg extract ${q(p.file)}::bench && sync`),
  ];
}

const MEMORY_ROWS = ['create: pvc-backup zstd', 'verify: pvc-backup zstd', 'restore: pvc-backup zstd'];

function selectedRows(s: Settings): Row[] {
  const rows = allRows();
  if (s.memoryMode) return rows.filter((r) => MEMORY_ROWS.includes(r.label));
  return rows.filter((r) => (!s.only || s.only.test(r.label)) && !(s.skip && s.skip.test(r.label)));
}

// ---------------------------------------------------------------- running

let context: Ctx | undefined;
const ctx = (): Ctx => context!;
let scratchDirs = 0;

function freshDir(label: string): string {
  const slug = label.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
  const dir = path.join(ctx().scratch, `${String(++scratchDirs).padStart(3, '0')}-${slug}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * The archive of the first source row that has one. When none has (e.g. BENCH_ONLY selected
 * only restore rows), the sources are run in order, untimed, until one writes an archive.
 */
async function need(sources: string[]): Promise<Product | string> {
  const { products, failures } = ctx();
  for (const s of sources) {
    const p = products.get(s);
    if (p) return p;
  }
  for (const s of sources.filter((l) => !failures.has(l))) {
    const row = allRows().find((r) => r.label === s)!;
    const prep = await row.prepare(freshDir(`${s} (prerequisite)`));
    if (typeof prep === 'string') {
      failures.set(s, prep);
      continue;
    }
    const m = await measure(prep.command);
    const p = m.exitCode === 0 ? prep.product?.() : undefined;
    if (p) {
      products.set(s, p);
      return p;
    }
    failures.set(s, m.exitCode === 0 ? 'no archive written' : failureText(m));
  }
  const last = sources[sources.length - 1]!;
  return `failed (needs ${last.replace(/^create: /, '')}: ${failures.get(last)})`;
}

/** One row's runs so far: each `runOnce` measures one more, `result` gives the medians. */
class RowRuns {
  private readonly partial: RowResult;
  private readonly ms: Measurement[] = [];
  private product: Product | undefined;

  constructor(readonly row: Row) {
    this.partial = { label: row.label, kind: row.kind, ours: row.ours, command: '', status: 'ok', runs: [] };
  }

  async runOnce(): Promise<void> {
    const { row } = this;
    const prep = await row.prepare(freshDir(row.label));
    if (typeof prep === 'string') return this.fail(prep);
    this.partial.command = prep.command;
    if (prep.input && prep.input.by !== 'pvc-backup') this.partial.input = `the archive made by ${prep.input.by}`;
    const m = await measure(prep.command);
    if (m.exitCode !== 0) return this.fail(failureText(m));
    this.ms.push(m);
    if (prep.product) {
      const p = prep.product();
      if (!p) return this.fail('failed (exit 0 but no archive found)');
      if (this.product && this.product.dest !== p.dest) rmSync(this.product.dest, { recursive: true, force: true }); // older run's archive: not needed
      this.product = p;
    }
  }

  get failed(): boolean {
    return this.partial.status === 'failed';
  }

  result(): RowResult {
    const { data, products, failures } = ctx();
    const { row, ms, product } = this;
    const result = this.partial;
    if (this.failed) return result;
    result.runs = ms.map((m) => m.seconds);
    result.seconds = median(result.runs);
    result.mbPerSecond = data.bytes / 1e6 / result.seconds;
    result.cpuSeconds = median(ms.map((m) => m.cpuSeconds));
    result.peakRssKiB = median(ms.map((m) => m.peakRssKiB));
    if (row.ours) {
      result.phases = logPhases(ms[ms.length - 1]!.stdout);
      const writeOnly = ms.map((m) => writeOnlySeconds(logPhases(m.stdout), m.seconds)).filter((v): v is number => v !== undefined && v > 0);
      if (row.kind === 'create' && writeOnly.length === ms.length) result.writeOnlySeconds = median(writeOnly);
    }
    if (product) {
      result.archiveBytes = bytesOf(product.file);
      result.ratio = data.bytes / result.archiveBytes;
      if (row.keepProduct) products.set(row.label, product);
      else rmSync(product.dest, { recursive: true, force: true }); // a single archive: cheap to delete now
    }
    failures.delete(row.label);
    return result;
  }

  private fail(error: string): void {
    this.partial.status = 'failed';
    this.partial.error = error;
    ctx().failures.set(this.row.label, error);
  }
}

/**
 * Runs every row `runs` times. With more than one run, the create rows go first, each run after
 * run, since later rows need their archives; then the rows that read an archive take turns (run 1
 * of each, then run 2 in reverse order, …). Back to back, the runs of one row drift apart by as
 * much as rows differ (on this VM most likely through the page-cache memory each extraction
 * takes, see docs/bench.md), so turns make such a drift hit every row alike. Results come in the
 * rows' order.
 */
async function runRows(rows: Row[], runs: number, report: (r: RowResult) => void): Promise<RowResult[]> {
  const done = new Map<Row, RowResult>();
  const finish = (r: RowRuns) => {
    const result = r.result();
    done.set(r.row, result);
    report(result);
  };
  const readers = rows.filter((r) => r.kind !== 'create');
  const groups = runs > 1 ? [...rows.filter((r) => r.kind === 'create').map((r) => [r]), readers] : rows.map((r) => [r]);
  for (const group of groups) {
    const turns = group.map((row) => new RowRuns(row));
    for (let i = 0; i < runs; i++) for (const r of turnOrder(turns, i)) if (!r.failed) await r.runOnce();
    turns.forEach(finish);
  }
  return rows.map((row) => done.get(row)!);
}

/** Size of an archive file, or of a repository directory (its files' sizes summed). */
function bytesOf(p: string): number {
  const st = lstatSync(p);
  if (!st.isDirectory()) return st.size;
  let sum = 0;
  for (const name of readdirSync(p)) sum += bytesOf(path.join(p, name));
  return sum;
}

/** The write-phase-only row derived from our backup's log, when the runner logs phase durations. */
function writePhaseRow(r: RowResult): RowResult | undefined {
  const seconds = r.writeOnlySeconds;
  if (r.status !== 'ok' || seconds === undefined) return undefined;
  const { data } = ctx();
  return { ...r, label: `${r.label} (write phase only, from log)`, derived: true, seconds, runs: [], mbPerSecond: data.bytes / 1e6 / seconds, peakRssKiB: undefined, cpuSeconds: undefined };
}

function log(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Generates (or finds) one profile's dataset, warms the cache and runs the rows on it. */
async function runProfile(s: Settings, profile: ProfileName, dir: string, rows: Row[]): Promise<{ data: DatasetInfo; results: RowResult[]; load: [number, number] }> {
  const started = Date.now();
  log(`dataset ${profile} in ${dir} ...`);
  const data = ensureDataset(PROFILES[profile], dir);
  log(`  ${data.bytes} bytes in ${data.files} files (${data.generated ? `generated in ${((Date.now() - started) / 1000).toFixed(1)} s` : 'already present'})`);
  context = { data, settings: s, products: new Map(), failures: new Map(), scratch: path.join(s.workdir, `scratch-${Date.now()}`) };
  if (!existsSync(CLI)) log(`note: ${CLI} is missing (npm run build); pvc-backup rows will fail`);
  if (s.pretouch) {
    const bytes = Math.min(3 * data.bytes, 0.5 * os.freemem(), 8 * 2 ** 30);
    log(`pre-touching ${(bytes / 2 ** 30).toFixed(1)} GiB of RAM: ${(await pretouchRam(bytes)).seconds.toFixed(1)} s`);
  }
  log(`warming the page cache: ${(await warmCache(data.dir)).seconds.toFixed(1)} s`);
  const loadBefore = os.loadavg()[0]!;
  let reported = 0;
  const rowResults = await runRows(rows, s.runs, (r) =>
    log(`[${++reported}/${rows.length}] ${r.label}: ${r.status === 'ok' ? `${r.seconds!.toFixed(2)} s, ${r.mbPerSecond!.toFixed(1)} MB/s, ${(r.peakRssKiB! / 1024).toFixed(1)} MiB` : r.error}`),
  );
  const results = rowResults.flatMap((r) => {
    const derived = writePhaseRow(r);
    return derived ? [r, derived] : [r];
  });
  if (s.keep) log(`kept scratch in ${ctx().scratch}`);
  else {
    log('removing scratch outputs ...');
    rmSync(ctx().scratch, { recursive: true, force: true });
  }
  return { data, results, load: [loadBefore, os.loadavg()[0]!] };
}

async function main(): Promise<void> {
  const s = settings();
  mkdirSync(s.workdir, { recursive: true });
  for (const old of readdirSync(s.workdir).filter((n) => n.startsWith('scratch-'))) {
    log(`removing leftover ${path.join(s.workdir, old)} (deleting many files slows this disk for a while)`);
    rmSync(path.join(s.workdir, old), { recursive: true, force: true });
  }
  if (s.memoryMode) {
    const runs: MemoryRun[] = [];
    for (const profile of s.memoryProfiles) {
      const { data, results, load } = await runProfile(s, profile, path.join(s.dataDir, `data-${profile}`), selectedRows(s));
      runs.push({ profile, files: data.files, bytes: data.bytes, rows: results.filter((r) => !r.derived), load });
    }
    const table = renderMemoryTable(runs);
    writeFileSync(path.join(s.workdir, 'results-memory.json'), JSON.stringify({ finishedAt: new Date().toISOString(), runs }, null, 2) + '\n');
    writeFileSync(path.join(s.workdir, 'results-memory.md'), table);
    process.stdout.write(`\n${table}\nresults: ${path.join(s.workdir, 'results-memory.json')}\n`);
    cleanupMeasure();
    return;
  }
  const { data, results, load } = await runProfile(s, s.profile, s.dataDir, selectedRows(s));
  const header: Header = { profile: s.profile, mode: 'full', datasetDir: data.dir, datasetBytes: data.bytes, datasetFiles: data.files, runs: s.runs, loadAverage: load };
  const targets = evaluateTargets(results, true);
  const table = renderTable(header, results, targets);
  writeResults(path.join(s.workdir, 'results.json'), header, results, targets);
  writeFileSync(path.join(s.workdir, 'results.md'), table);
  process.stdout.write(`\n${table}\nresults: ${path.join(s.workdir, 'results.json')}\n`);
  cleanupMeasure();
}

if (process.argv.includes('--sqlite')) {
  await (await import('./sqlite-copy.js')).runSqliteBench();
  cleanupMeasure();
} else await main();
