import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';

/**
 * Real PostgreSQL servers for the dump tests, from Debian's `postgresql` package: initdb and
 * postgres run as an unprivileged user (yourself, or `nobody` when the tests run as root), in
 * a temporary directory of their own, listening only on a Unix socket there (no TCP port, so
 * parallel tests never collide). Every server a test starts is stopped by its pid after the
 * test, and its directory removed.
 */

export interface PostgresServer {
  binDir: string;
  dataDir: string;
  /** The socket directory: what PGHOST names. */
  socketDir: string;
  port: number;
  pid: number;
  /** The OS user the server runs as; clients run as it too (run()). */
  uid: number;
  gid: number;
  /** PGHOST, PGPORT, PGUSER for clients of this server (trust authentication). */
  env: Record<string, string>;
  /** Runs a client program (psql, pg_dump, pgbench, ...) of the same version against this server. */
  run(program: string, args: string[], options?: { input?: string; env?: Record<string, string>; cwd?: string }): { code: number | null; stdout: string; stderr: string };
  /** Runs a shell script (sh -e) as the server's user, with this version's client programs first on PATH and PG* set. */
  shell(script: string, options?: { env?: Record<string, string>; cwd?: string }): { code: number | null; stdout: string; stderr: string };
  /** psql -At -c SQL on a database; throws on failure. */
  sql(database: string, sql: string): string;
  /** Starts a client program in the background (a load generator); stopped with the server. */
  spawn(program: string, args: string[]): ChildProcess;
  stop(): Promise<void>;
}

const SUPERUSER = 'postgres';
const PORT = 5432;

/** The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin), if any. */
export function postgresBinDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!fs.existsSync(base)) return undefined;
  const majors = fs
    .readdirSync(base)
    .filter((v) => /^\d+$/.test(v) && fs.existsSync(path.join(base, v, 'bin/postgres')) && fs.existsSync(path.join(base, v, 'bin/initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? path.join(base, majors[0], 'bin') : undefined;
}

/** The unprivileged uid/gid servers and dump commands run as. */
export function unprivilegedUser(): { uid: number; gid: number } {
  if (process.getuid?.() !== 0) return { uid: process.getuid!(), gid: process.getgid!() };
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('nobody:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  return { uid: Number(uid ?? 65534), gid: Number(gid ?? 65534) };
}

const servers: PostgresServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  process.kill(child.pid, signal);
  const timer = setTimeout(() => child.exitCode === null && child.signalCode === null && process.kill(child.pid!, 'SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

/** initdb + postgres in a new temporary directory; resolves when the server accepts connections. */
export async function startPostgres(label = 'pg'): Promise<PostgresServer> {
  const binDir = postgresBinDir();
  if (!binDir) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql; scripts/setup.sh does)');
  const { uid, gid } = unprivilegedUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pvc-backup-${label}-`));
  const dataDir = path.join(dir, 'data');
  const socketDir = path.join(dir, 'socket');
  fs.mkdirSync(socketDir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(socketDir, 0o755);
  fs.chownSync(dir, uid, gid);
  fs.chownSync(socketDir, uid, gid);
  const env = { PGHOST: socketDir, PGPORT: String(PORT), PGUSER: SUPERUSER };
  const baseEnv = { PATH: `${binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, LANG: 'C', LC_ALL: 'C', TZ: 'UTC' };

  const init = spawnSync(path.join(binDir, 'initdb'), ['-D', dataDir, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync'], {
    uid,
    gid,
    cwd: dir,
    env: baseEnv,
    encoding: 'utf8',
  });
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}):\n${init.stderr}`);

  const log = fs.openSync(path.join(dir, 'postgres.log'), 'a');
  fs.fchownSync(log, uid, gid);
  // Durability settings are off: the tests are about snapshots, not power cuts, and the machine is shared.
  const server = spawn(
    path.join(binDir, 'postgres'),
    ['-D', dataDir, '-k', socketDir, '-p', String(PORT), '-c', 'listen_addresses=', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=30'],
    { uid, gid, cwd: dir, env: baseEnv, stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  const background: ChildProcess[] = [];

  const run: PostgresServer['run'] = (program, args, options = {}) => {
    const result = spawnSync(path.join(binDir, program), args, {
      uid,
      gid,
      cwd: options.cwd ?? dir,
      env: { ...baseEnv, ...env, ...options.env },
      input: options.input,
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? result.error?.message ?? '' };
  };

  const shell: PostgresServer['shell'] = (script, options = {}) => {
    const result = spawnSync('/bin/sh', ['-ec', script], { uid, gid, cwd: options.cwd ?? dir, env: { ...baseEnv, ...env, ...options.env }, encoding: 'utf8' });
    return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? result.error?.message ?? '' };
  };

  const pg: PostgresServer = {
    binDir,
    dataDir,
    socketDir,
    port: PORT,
    pid: server.pid!,
    uid,
    gid,
    env,
    run,
    shell,
    sql(database, sql) {
      const r = run('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', database, '-c', sql]);
      if (r.code !== 0) throw new Error(`psql -d ${database} failed (${r.code}): ${r.stderr}`);
      return r.stdout.trim();
    },
    spawn(program, args) {
      const child = spawn(path.join(binDir, program), args, { uid, gid, cwd: dir, env: { ...baseEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout?.resume();
      child.stderr?.resume();
      background.push(child);
      return child;
    },
    async stop() {
      await Promise.all(background.map((c) => stopChild(c, 'SIGINT', 5000)));
      // SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, the server exits cleanly.
      await stopChild(server, 'SIGINT', 20_000);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  servers.push(pg);

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`postgres exited (${server.exitCode}):\n${fs.readFileSync(path.join(dir, 'postgres.log'), 'utf8')}`);
    if (run('pg_isready', ['-q']).code === 0) break;
    if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 60 s:\n${fs.readFileSync(path.join(dir, 'postgres.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return pg;
}
