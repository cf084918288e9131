import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkDumps, dumpArchivePath, dumpContainerCommand, dumpContainerEnv } from '../../runner/consistency/dumps.js';
import { type PostgresServer, postgresBinDir, startPostgres } from '../helpers/postgres.js';
import { archivesIn, runCli, tarList } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';
import { readmeDumpRecipe, readmeRecipe } from './readme-recipes.js';

/**
 * The README's PostgreSQL recipe, run the way the backup pod's init container runs it, against a
 * real server under a concurrent pgbench (TPC-B-like) write load, then archived by
 * `pvc-backup backup --dump` and restored from that archive with the README's commands. Each pgbench transaction
 * updates one account, one teller and one branch by a delta and inserts that delta into
 * pgbench_history, all in one transaction, from balances that start at 0. So a restore of a
 * consistent snapshot has every balance equal to the sum of its history deltas; a restore that
 * mixes two instants does not (the control at the end proves the check notices).
 */

const tempDir = useTempDirs();
const SCALE = 2; // 200 000 accounts

function count(pg: PostgresServer, db: string, table: string): number {
  return Number(pg.sql(db, `SELECT count(*) FROM ${table}`));
}

/** Balances that disagree with the history restored beside them, per table; all 0 for one consistent point. */
function inconsistencies(pg: PostgresServer, db: string): Record<string, number> {
  const mismatch = (table: string, key: string, balance: string): number =>
    Number(
      pg.sql(
        db,
        `WITH h AS (SELECT ${key}, sum(delta) AS s FROM pgbench_history GROUP BY ${key})
         SELECT count(*) FROM ${table} t LEFT JOIN h USING (${key}) WHERE t.${balance} <> coalesce(h.s, 0)`,
      ),
    );
  return { accounts: mismatch('pgbench_accounts', 'aid', 'abalance'), tellers: mismatch('pgbench_tellers', 'tid', 'tbalance'), branches: mismatch('pgbench_branches', 'bid', 'bbalance') };
}

async function waitFor(predicate: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs a dump exactly as the chart's init container will: wrapper command + the recipe's command as args + its env. */
function runInitContainer(pg: PostgresServer, dumpsDir: string, recipe: ReturnType<typeof readmeDumpRecipe>, secrets: Record<string, string>) {
  const [command, ...wrapperArgs] = dumpContainerCommand();
  const env: Record<string, string> = { PATH: `${pg.binDir}:/usr/bin:/bin` };
  for (const e of recipe.env) env[e.name] = e.value ?? secrets[e.name] ?? '';
  // In the cluster PGHOST/PGPORT name the database Service; here they point at the test server's socket.
  Object.assign(env, pg.env);
  for (const e of dumpContainerEnv(recipe.name, dumpsDir)) env[e.name] = e.value;
  return new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(command!, [...wrapperArgs, ...recipe.command], { env, uid: pg.uid, gid: pg.gid, cwd: '/', stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

// Skipped on a laptop without PostgreSQL; in CI (scripts/setup.sh installs it) a missing server is a failure.
describe.skipIf(!postgresBinDir() && !process.env.CI)('PostgreSQL dump (real server, concurrent writes)', () => {
  it('the README recipe, run as the init container runs it, restores with the README commands to one consistent point', async () => {
    const root = await tempDir('pg-dump');
    fs.chmodSync(root, 0o755); // the dump and the restore run as the servers' unprivileged user
    const live = await startPostgres('pg-live');
    live.sql('postgres', 'CREATE DATABASE shop');
    const init = live.run('pgbench', ['-i', '-q', '-s', String(SCALE), 'shop']);
    expect(init.code, init.stderr).toBe(0);

    // A steady write load (rate-limited: the machine is shared), running before, during and after the dump.
    const load = live.spawn('pgbench', ['-n', '-c', '4', '-j', '2', '-R', '400', '-T', '600', 'shop']);
    await waitFor(() => count(live, 'shop', 'pgbench_history') >= 300, 'pgbench to commit 300 transactions');

    const recipe = readmeDumpRecipe('postgresql-dump');
    expect(recipe.name).toBe('postgres');
    const dumps = path.join(root, 'dumps');
    fs.mkdirSync(dumps, { mode: 0o777 });
    fs.chmodSync(dumps, 0o777); // an emptyDir is world-writable
    const before = count(live, 'shop', 'pgbench_history');
    const dump = await runInitContainer(live, dumps, recipe, { PGPASSWORD: 'unused-with-trust-auth' });
    const after = count(live, 'shop', 'pgbench_history');
    expect(dump.code, dump.stderr).toBe(0);
    expect(after).toBeGreaterThan(before); // the load really ran while the dump was made

    const [checked] = checkDumps(dumps, ['postgres']);
    expect(checked).toMatchObject({ name: 'postgres', files: 1 });
    expect(checked!.bytes).toBeGreaterThan(100_000);

    // The backup pod's runner: the dump alone (no source claim), into the backup directory.
    const dest = path.join(root, 'backup');
    fs.mkdirSync(dest);
    const backup = await runCli(['backup', '--dest', dest, '--prefix', 'shop', '--dumps-dir', dumps, '--dump', 'postgres']);
    expect(backup.code, backup.stderr).toBe(0);
    const [archive] = archivesIn(dest);
    expect(tarList(path.join(dest, archive!))).toContain(`./${dumpArchivePath('postgres', 'shop.dump')}`);
    expect((await runCli(['verify', '--dest', dest, '--prefix', 'shop'])).code).toBe(0);
    // The README's restore, on the archive copied out of the backup volume (under the recipe's name).
    const work = path.join(root, 'work');
    fs.mkdirSync(work);
    fs.copyFileSync(path.join(dest, archive!), path.join(work, 'shop-20260101T000000Z.tar.gz'));
    fs.chmodSync(path.join(work, 'shop-20260101T000000Z.tar.gz'), 0o644);
    fs.chownSync(work, live.uid, live.gid);

    const fresh = await startPostgres('pg-fresh');
    const restore = fresh.shell(readmeRecipe('postgresql-restore'), { cwd: work });
    expect(restore.code, restore.stderr).toBe(0);

    // One consistent point: every balance is the sum of the history restored with it ...
    expect(inconsistencies(fresh, 'shop_restored')).toEqual({ accounts: 0, tellers: 0, branches: 0 });
    const sums = fresh.sql(
      'shop_restored',
      'SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) FROM pgbench_history)',
    );
    expect(new Set(sums.split('|')).size).toBe(1);
    expect(count(fresh, 'shop_restored', 'pgbench_accounts')).toBe(SCALE * 100_000);
    // ... the point lies between the start and the end of the dump ...
    const restored = count(fresh, 'shop_restored', 'pgbench_history');
    expect(restored).toBeGreaterThanOrEqual(before);
    expect(restored).toBeLessThanOrEqual(after);
    // ... and every restored history row is one the live server committed.
    live.sql('shop', 'CREATE TABLE restored_history (LIKE pgbench_history)');
    const rows = fresh.run('psql', ['-X', '-q', '-d', 'shop_restored', '-c', '\\copy pgbench_history TO STDOUT']);
    expect(rows.code, rows.stderr).toBe(0);
    const load2 = live.run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'shop', '-c', '\\copy restored_history FROM STDIN'], { input: rows.stdout });
    expect(load2.code, load2.stderr).toBe(0);
    expect(
      Number(
        live.sql(
          'shop',
          `SELECT count(*) FROM restored_history r WHERE NOT EXISTS (
             SELECT 1 FROM pgbench_history h WHERE (h.tid, h.bid, h.aid, h.delta, h.mtime) = (r.tid, r.bid, r.aid, r.delta, r.mtime))`,
        ),
      ),
    ).toBe(0);

    // Control: the same tables dumped at two instants (history first, accounts a moment later) do not pass the check.
    const split = path.join(root, 'split');
    fs.mkdirSync(split);
    fs.chownSync(split, live.uid, live.gid);
    expect(live.run('pg_dump', ['-Fc', '-t', 'pgbench_history', '-t', 'pgbench_tellers', '-t', 'pgbench_branches', '-f', `${split}/a.dump`, 'shop']).code).toBe(0);
    const mark = count(live, 'shop', 'pgbench_history');
    await waitFor(() => count(live, 'shop', 'pgbench_history') > mark + 20, 'more transactions');
    expect(live.run('pg_dump', ['-Fc', '-t', 'pgbench_accounts', '-f', `${split}/b.dump`, 'shop']).code).toBe(0);
    load.kill('SIGINT');
    fresh.sql('postgres', 'CREATE DATABASE control');
    for (const part of ['a', 'b']) expect(fresh.run('pg_restore', ['--no-owner', '--exit-on-error', '-d', 'control', `${split}/${part}.dump`]).code).toBe(0);
    expect(inconsistencies(fresh, 'control').accounts).toBeGreaterThan(0);
  });
});
