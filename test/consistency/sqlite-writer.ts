/**
 * A steady SQLite writer in its own process, for the online-copy tests:
 *
 *   sqlite-writer.ts FILE wal|delete write [FILLER_ROWS]
 *     creates the schema (filler table of 4 KB rows, FILLER_ROWS rows, default 12000), prints
 *     {"event":"ready"}, then commits numbered transactions until stdin closes, printing
 *     {"event":"committed","seq":N} after each COMMIT returns, and {"event":"done",...} at the end.
 *   sqlite-writer.ts FILE delete hold
 *     takes an EXCLUSIVE lock (BEGIN EXCLUSIVE), prints {"event":"holding"}, and keeps it until stdin closes.
 *
 * Each transaction k inserts commits(k, digest(k)), moves k units between two accounts (their sum
 * stays 0), rewrites one filler row (so pages all over the file change) and sets meta.last_seq = k.
 * A consistent copy therefore holds commits 1..S with no gap, meta.last_seq = S and a zero sum.
 */
import { DatabaseSync } from 'node:sqlite';
import { ACCOUNTS, digest } from './sqlite-ledger.js';

const [file, mode, action = 'write', fillerArg] = process.argv.slice(2);
if (!file || (mode !== 'wal' && mode !== 'delete')) throw new Error('usage: sqlite-writer.ts FILE wal|delete write|hold [FILLER_ROWS]');

// process.stdout blocks on a full pipe (Linux), so a slow reader slows the writer instead of losing lines.
const say = (value: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(value)}\n`);
};

let stop = false;
process.stdin.on('end', () => (stop = true)).resume();

const db = new DatabaseSync(file, { timeout: 60_000 });
db.exec(`PRAGMA journal_mode=${mode}`);
if (action === 'hold') {
  db.exec('BEGIN EXCLUSIVE');
  say({ event: 'holding' });
  const wait = (): void => {
    if (stop) {
      db.exec('ROLLBACK');
      db.close();
    } else setTimeout(wait, 20);
  };
  wait();
} else {
  db.exec(`
    CREATE TABLE IF NOT EXISTS commits(seq INTEGER PRIMARY KEY, digest TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS filler(id INTEGER PRIMARY KEY, body BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS meta(id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS commits_digest ON commits(digest);
  `);
  const fillerRows = Number(fillerArg ?? 12_000);
  // A file written by an earlier run is continued, not created again.
  if ((db.prepare('SELECT count(*) AS n FROM meta').get() as { n: number }).n === 0) {
    db.exec('BEGIN');
    const insertFiller = db.prepare('INSERT INTO filler(body) VALUES (randomblob(4000))');
    for (let i = 0; i < fillerRows; i++) insertFiller.run();
    const insertAccount = db.prepare('INSERT INTO accounts VALUES (?, 0)');
    for (let i = 0; i < ACCOUNTS; i++) insertAccount.run(i);
    db.exec('INSERT INTO meta VALUES (1, 0)');
    db.exec('COMMIT');
  }
  say({ event: 'ready' });

  const insertCommit = db.prepare('INSERT INTO commits VALUES (?, ?)');
  const move = db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?');
  const touch = db.prepare('UPDATE filler SET body = randomblob(4000) WHERE id = ?');
  const rows = (db.prepare('SELECT count(*) AS n FROM filler').get() as { n: number }).n;
  const setLast = db.prepare('UPDATE meta SET last_seq = ? WHERE id = 1');
  let seq = (db.prepare('SELECT last_seq AS n FROM meta').get() as { n: number }).n;
  let busy = 0;
  const tick = (): void => {
    const until = performance.now() + 20;
    while (!stop && performance.now() < until) {
      const next = seq + 1;
      try {
        db.exec('BEGIN IMMEDIATE');
        insertCommit.run(next, digest(next));
        move.run(-next, next % ACCOUNTS);
        move.run(next, (next * 7 + 3) % ACCOUNTS);
        touch.run(1 + ((next * 7919) % rows));
        setLast.run(next);
        db.exec('COMMIT');
      } catch (error) {
        busy++;
        if (db.isTransaction) db.exec('ROLLBACK');
        say({ event: 'busy', message: (error as Error).message });
        continue;
      }
      seq = next;
      say({ event: 'committed', seq });
    }
    if (stop) {
      db.close();
      say({ event: 'done', seq, busy });
    } else setImmediate(tick);
  };
  tick();
}
