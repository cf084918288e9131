/**
 * `npm run bench -- --sqlite`: how to copy a live SQLite database, side by side in one run.
 *
 * One database (BENCH_SQLITE_MB, default 256 MiB, the ledger schema of the consistency tests),
 * copied by each method at rest and while a writer in another process commits as fast as it can
 * (WAL mode, and rollback-journal mode). Each copy is then checked: integrity_check, and the
 * ledger invariants (commits 1..N without a gap, the counter and the balances of that instant).
 *
 *   pvc-backup        copySqliteDatabase(): read-only, one backup() step in one read transaction, then integrity_check
 *   VACUUM INTO       node:sqlite, read-only connection, then integrity_check
 *   sqlite3 .backup   the sqlite3 shell's backup (100 pages per step)
 *   cp                the raw files (database and -wal/-journal), as a file-level tar reads them
 *
 * Environment: BENCH_SQLITE_MB, BENCH_WORKDIR (default /tmp/pvc-backup-bench/work), BENCH_SQLITE_TIMEOUT
 * (seconds per copy, default 120), BENCH_SQLITE_RAW_TRIES (raw copies for the consistency count, default 10).
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readLedger } from '../test/consistency/sqlite-ledger.js';
import { measure, shellQuote as q } from './measure.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = path.join(REPO, 'node_modules/.bin/node');
const WRITER = path.join(REPO, 'test/consistency/sqlite-writer.ts');
const SQLITE_MODULE = path.join(REPO, 'dist/runner/consistency/sqlite.js');
const MB = Number(process.env.BENCH_SQLITE_MB || 256);
const TIMEOUT = Number(process.env.BENCH_SQLITE_TIMEOUT || 120);
const RAW_TRIES = Number(process.env.BENCH_SQLITE_RAW_TRIES || 10);
const WORK = path.resolve(process.env.BENCH_WORKDIR || '/tmp/pvc-backup-bench/work', 'sqlite');

type Mode = 'wal' | 'delete';
interface Condition {
  label: string;
  mode: Mode;
  writer: boolean;
}
interface Method {
  label: string;
  /** The shell command copying SRC_DIR/app.db to OUT_DIR/app.db. */
  command(src: string, out: string): string;
  raw?: boolean;
}

const nodeScript = (code: string): string => `${q(NODE)} --input-type=module -e ${q(code)}`;

const METHODS: Method[] = [
  {
    label: 'pvc-backup (backup() one step + integrity_check)',
    command: (src, out) =>
      nodeScript(
        `const m = await import(${JSON.stringify(SQLITE_MODULE)}); const c = await m.copySqliteDatabase(${JSON.stringify(src)}, 'app.db', ${JSON.stringify(`${out}/app.db`)}); console.log(JSON.stringify({ copySeconds: c.copySeconds, checkSeconds: c.checkSeconds, openedAs: c.openedAs }));`,
      ),
  },
  {
    label: 'VACUUM INTO + integrity_check',
    command: (src, out) =>
      nodeScript(
        `import { DatabaseSync } from 'node:sqlite'; const t0 = performance.now(); const db = new DatabaseSync(${JSON.stringify(`${src}/app.db`)}, { readOnly: true, timeout: 30000 }); db.exec("VACUUM INTO '${out}/app.db'"); db.close(); const t1 = performance.now();
         const c = new DatabaseSync(${JSON.stringify(`${out}/app.db`)}, { readOnly: true }); const r = c.prepare('PRAGMA integrity_check').all(); c.close(); if (r.length !== 1 || r[0].integrity_check !== 'ok') process.exit(3);
         console.log(JSON.stringify({ copySeconds: (t1 - t0) / 1000, checkSeconds: (performance.now() - t1) / 1000 }));`,
      ),
  },
  { label: 'sqlite3 .backup', command: (src, out) => `sqlite3 -readonly ${q(`${src}/app.db`)} '.timeout 30000' ${q(`.backup ${out}/app.db`)}` },
  // A -journal may vanish between the glob and its copy, as it can for tar: that is not a failure of cp.
  { label: 'cp (raw files)', command: (src, out) => `for f in ${q(src)}/app.db*; do cp "$f" ${q(out)}/ 2>/dev/null || [ ! -e "$f" ]; done; rm -f ${q(out)}/app.db-shm`, raw: true },
];

const CONDITIONS: Condition[] = [
  { label: 'at rest (WAL)', mode: 'wal', writer: false },
  { label: 'writer running (WAL)', mode: 'wal', writer: true },
  { label: 'writer running (rollback journal)', mode: 'delete', writer: true },
];

interface Writer {
  proc: ChildProcessWithoutNullStreams;
  lastSeq: () => number;
  stop(): Promise<{ seq: number; busy: number }>;
}

function startWriter(file: string, mode: Mode, fillerRows: number): Promise<Writer> {
  const proc = spawn(NODE, ['--import', 'tsx', WRITER, file, mode, 'write', String(fillerRows)], { cwd: REPO, stdio: 'pipe' });
  let last = 0;
  let done: { seq: number; busy: number } | undefined;
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += String(d)));
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const e = JSON.parse(line) as { event: string; seq?: number; busy?: number };
      if (e.event === 'committed') last = e.seq!;
      if (e.event === 'done') done = { seq: e.seq!, busy: e.busy! };
      if (e.event === 'ready') {
        resolve({
          proc,
          lastSeq: () => last,
          stop: () =>
            new Promise((res) => {
              proc.once('close', () => res(done ?? { seq: last, busy: NaN }));
              proc.stdin.end();
            }),
        });
      }
    });
    proc.once('close', (code) => reject(new Error(`writer exited (${code}) before it was ready: ${stderr}`)));
  });
}

function consistent(file: string, raw: boolean): string {
  try {
    const l = readLedger(file, { asApplication: raw });
    if (l.integrity.join() !== 'ok') {
      const problems = l.integrity.flatMap((r) => r.split('\n')).filter((r) => r !== 'ok' && !r.startsWith('*** in database'));
      return `no: integrity_check: ${problems.length} problems, first: ${problems[0]}`;
    }
    if (l.commits !== l.maxSeq || l.lastSeq !== l.maxSeq) return `no: commits ${l.commits}, newest ${l.maxSeq}, counter ${l.lastSeq}`;
    if (l.balanceSum !== 0 || l.badDigests !== 0) return 'no: balances or digests torn';
    return `yes (1..${l.lastSeq})`;
  } catch (error) {
    return `no: ${(error as Error).message.split('\n')[0]}`;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function bytesOf(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);
}

export async function runSqliteBench(): Promise<void> {
  if (!existsSync(SQLITE_MODULE)) throw new Error(`${SQLITE_MODULE} is missing: npm run build`);
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  const fillerRows = Math.round((MB * 1024 * 1024) / 4150);
  const loadBefore = os.loadavg()[0]!;
  const lines: string[] = [];
  const out = (s: string) => {
    lines.push(s);
    process.stdout.write(`${s}\n`);
  };

  const sources = new Map<Mode, string>();
  for (const mode of ['wal', 'delete'] as const) {
    const dir = path.join(WORK, `src-${mode}`);
    mkdirSync(dir);
    process.stderr.write(`creating a ${MB} MiB ${mode} database ...\n`);
    const w = await startWriter(path.join(dir, 'app.db'), mode, fillerRows);
    await w.stop();
    sources.set(mode, dir);
  }
  const dbBytes = statSync(path.join(sources.get('wal')!, 'app.db')).size;

  out(`SQLite copy methods, database ${(dbBytes / 2 ** 20).toFixed(0)} MiB, ${os.cpus().length} CPUs, load average ${loadBefore.toFixed(2)} at start`);
  out('');
  out('| condition | method | seconds | copy s | check s | peak RSS MiB | output MiB | consistent | writer commits during copy | writer errors |');
  out('|---|---|---|---|---|---|---|---|---|---|');
  let run = 0;
  for (const condition of CONDITIONS) {
    const src = sources.get(condition.mode)!;
    for (const method of METHODS) {
      const dest = path.join(WORK, `out-${++run}`);
      mkdirSync(dest);
      let writer: Writer | undefined;
      if (condition.writer) {
        writer = await startWriter(path.join(src, 'app.db'), condition.mode, fillerRows);
        await sleep(1000);
      }
      const before = writer?.lastSeq() ?? 0;
      const m = await measure(`timeout ${TIMEOUT} bash -c ${q(method.command(src, dest))}`);
      const after = writer?.lastSeq() ?? 0;
      const stopped = await writer?.stop();
      const phases = (() => {
        try {
          return JSON.parse(m.stdout.trim().split('\n').pop() ?? '') as { copySeconds?: number; checkSeconds?: number };
        } catch {
          return {};
        }
      })();
      const ok = m.exitCode === 0;
      const result = !ok ? (m.exitCode === 124 ? `did not finish in ${TIMEOUT} s` : `failed (exit ${m.exitCode})`) : consistent(path.join(dest, 'app.db'), method.raw === true);
      out(
        `| ${condition.label} | ${method.label} | ${m.seconds.toFixed(2)} | ${phases.copySeconds?.toFixed(2) ?? ''} | ${phases.checkSeconds?.toFixed(2) ?? ''} | ${(m.peakRssKiB / 1024).toFixed(0)} | ${ok ? (bytesOf(dest) / 2 ** 20).toFixed(0) : ''} | ${result} | ${condition.writer ? after - before : ''} | ${stopped ? stopped.busy : ''} |`,
      );
      rmSync(dest, { recursive: true, force: true });
    }
  }

  out('');
  out(`Raw copies (cp of the database and its -wal/-journal, opened the way an application opens restored files) under the writer, ${RAW_TRIES} tries each:`);
  out('');
  out('| journal mode | inconsistent copies |');
  out('|---|---|');
  for (const mode of ['wal', 'delete'] as const) {
    const src = sources.get(mode)!;
    const writer = await startWriter(path.join(src, 'app.db'), mode, fillerRows);
    await sleep(1000);
    let bad = 0;
    for (let i = 0; i < RAW_TRIES; i++) {
      const dest = path.join(WORK, `raw-${mode}-${i}`);
      mkdirSync(dest);
      for (const name of readdirSync(src).filter((n) => !n.endsWith('-shm'))) {
        try {
          cpSync(path.join(src, name), path.join(dest, name));
        } catch {
          // a -journal that vanished between readdir and copy
        }
      }
      if (!consistent(path.join(dest, 'app.db'), true).startsWith('yes')) bad++;
      rmSync(dest, { recursive: true, force: true });
      await sleep(200);
    }
    await writer.stop();
    out(`| ${mode === 'wal' ? 'WAL' : 'rollback journal'} | ${bad} of ${RAW_TRIES} |`);
  }
  out('');
  out(`load average ${loadBefore.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)}`);
  writeFileSync(path.join(WORK, 'results.md'), `${lines.join('\n')}\n`);
  process.stderr.write(`results: ${path.join(WORK, 'results.md')}\n`);
  rmSync(path.join(WORK, 'src-wal'), { recursive: true, force: true });
  rmSync(path.join(WORK, 'src-delete'), { recursive: true, force: true });
}
