import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode, LockHeldError, OperationError } from '../../runner/errors.js';
import { type DirectoryLock, acquireLock, readLock } from '../../runner/store/lock.js';
import { LOCK_FILE } from '../../runner/store/naming.js';
import { names, useTempDirs } from './support.js';

const tempDir = useTempDirs();
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const childScript = path.join(here, 'lock-child.ts');

interface Child {
  proc: ChildProcessWithoutNullStreams;
  /** Resolves with the next JSON line whose event is one of `events`. */
  next(...events: string[]): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

const children: Child[] = [];
const locks: DirectoryLock[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  await Promise.all(locks.splice(0).map((l) => l.release()));
});

function startChild(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', childScript, ...args], { cwd: repoRoot, stdio: 'pipe' });
  const queue: Record<string, unknown>[] = [];
  const waiters: { events: string[]; resolve: (v: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += String(d)));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const value = JSON.parse(line) as Record<string, unknown>;
    const i = waiters.findIndex((w) => w.events.includes(String(value.event)));
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(value);
    else queue.push(value);
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const child: Child = {
    proc,
    exited,
    next: (...events) =>
      new Promise((resolve, reject) => {
        const i = queue.findIndex((v) => events.includes(String(v.event)));
        if (i >= 0) return resolve(queue.splice(i, 1)[0]!);
        waiters.push({ events, resolve });
        void exited.then((code) => setTimeout(() => reject(new Error(`child exited ${code} before ${events.join('|')}: ${stderr}`)), 100));
      }),
  };
  children.push(child);
  return child;
}

async function take(dir: string, staleSeconds = 600, warnings: string[] = []): Promise<DirectoryLock> {
  const lock = await acquireLock(dir, { command: 'test', staleSeconds, onWarning: (m) => warnings.push(m) });
  locks.push(lock);
  return lock;
}

async function writeForeignLock(dir: string, holder: { host: string; pid: number }, ageSeconds = 0): Promise<string> {
  const file = path.join(dir, LOCK_FILE);
  await writeFile(file, JSON.stringify({ ...holder, command: 'backup', startedAt: '2026-01-01T00:00:00.000Z' }) + '\n');
  if (ageSeconds > 0) {
    const t = new Date(Date.now() - ageSeconds * 1000);
    await utimes(file, t, t);
  }
  return file;
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const proc = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => proc.on('exit', r));
  return proc.pid!;
}

/** Polls until `condition` holds; fails after 10 s. */
async function waitFor(condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met within 10 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Classifies what the lock module left in a directory. */
async function lockDebris(dir: string) {
  const all = await names(dir);
  return {
    lock: all.includes(LOCK_FILE),
    tokens: all.filter((n) => n.startsWith(`${LOCK_FILE}.break-`)).length,
    movedAside: all.filter((n) => n.startsWith(`${LOCK_FILE}.broken-`)).length,
    other: all.filter((n) => n !== LOCK_FILE && !n.startsWith(`${LOCK_FILE}.`)),
  };
}

async function expectHeld(promise: Promise<unknown>): Promise<LockHeldError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LockHeldError);
  expect((error as LockHeldError).exitCode).toBe(ExitCode.locked);
  expect((error as Error).message).not.toContain('\n');
  return error as LockHeldError;
}

describe('acquireLock', () => {
  it('creates the lock file with holder information and removes it on release', async () => {
    const dir = await tempDir('lock');
    const lock = await take(dir);
    const content = JSON.parse(await readFile(path.join(dir, LOCK_FILE), 'utf8'));
    expect(content).toMatchObject({ host: os.hostname(), pid: process.pid, command: 'test' });
    expect(new Date(content.startedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(lock.path).toBe(path.join(dir, LOCK_FILE));
    await lock.release();
    expect(await names(dir)).toEqual([]);
  });

  it('refuses a second holder in the same process with LockHeldError (exit 4)', async () => {
    const dir = await tempDir('lock');
    await take(dir);
    const error = await expectHeld(take(dir));
    expect(error.message).toContain(`pid ${process.pid}`);
    expect(error.message).toContain(os.hostname());
    expect(error.message).toContain(LOCK_FILE);
  });

  it('fails with an operation error (exit 1) when the directory does not exist', async () => {
    const dir = await tempDir('lock');
    const error = await take(path.join(dir, 'missing')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OperationError);
    expect((error as OperationError).exitCode).toBe(ExitCode.failed);
  });

  it('keeps out another process while one holds the lock (exit 4), and lets it in after release', async () => {
    const dir = await tempDir('lock');
    const holder = startChild([dir, 'hold', '600']);
    const acquired = await holder.next('acquired', 'error');
    expect(acquired.event).toBe('acquired');
    const holderPid = acquired.pid as number;

    // A second process gets exit code 4 and a message naming the holder.
    const contender = startChild([dir, 'try', '600']);
    const result = await contender.next('acquired', 'error');
    expect(result).toMatchObject({ event: 'error', name: 'LockHeldError' });
    expect(result.message).toContain(`pid ${holderPid}`);
    expect(result.message).toContain('child-hold');
    expect(await contender.exited).toBe(ExitCode.locked);

    // So does this process.
    const error = await expectHeld(take(dir));
    expect(error.message).toContain(`pid ${holderPid} on host ${os.hostname()}`);

    holder.proc.stdin.end();
    expect(await holder.exited).toBe(0);
    expect(await names(dir)).toEqual([]);
    const lock = await take(dir);
    expect(lock.info.pid).toBe(process.pid);
  });

  it('lets exactly one of several racing processes break a stale lock', async () => {
    const dir = await tempDir('lock');
    await writeForeignLock(dir, { host: 'gone-host', pid: 999_999 }, 3600);
    const racers = Array.from({ length: 4 }, () => startChild([dir, 'race', '600', '3000']));
    await Promise.all(racers.map((r) => r.next('ready')));
    for (const r of racers) r.proc.stdin.write('go\n');
    const outcomes = await Promise.all(racers.map((r) => r.next('acquired', 'error')));
    const winners = outcomes.filter((o) => o.event === 'acquired');
    expect(winners).toHaveLength(1);
    expect(outcomes.filter((o) => o.event === 'error' && o.name === 'LockHeldError')).toHaveLength(3);
    const codes = await Promise.all(racers.map((r) => r.exited));
    expect(codes.sort()).toEqual([0, 4, 4, 4]);
    // The winner released; what remains is at most the (young) break token of the stale lock.
    expect(await lockDebris(dir)).toEqual({ lock: false, tokens: 1, movedAside: 0, other: [] });
  });

  it('lets exactly one of several concurrent in-process attempts break a stale lock', async () => {
    const dir = await tempDir('lock');
    await writeForeignLock(dir, { host: 'gone-host', pid: 999_999 }, 3600);
    const attempts = await Promise.allSettled(Array.from({ length: 6 }, () => take(dir, 600)));
    expect(attempts.filter((a) => a.status === 'fulfilled')).toHaveLength(1);
    for (const a of attempts) if (a.status === 'rejected') expect(a.reason).toBeInstanceOf(LockHeldError);
    expect(await lockDebris(dir)).toEqual({ lock: true, tokens: 1, movedAside: 0, other: [] });
  });

  it('breaks a lock whose heartbeat is older than the stale age, with a warning', async () => {
    const dir = await tempDir('lock');
    await writeForeignLock(dir, { host: 'other-host', pid: 4242 }, 3600);
    const warnings: string[] = [];
    const lock = await take(dir, 600, warnings);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/stale lock .*backup pid 4242 on host other-host/);
    expect(warnings[0]).toMatch(/heartbeat is \d+s old/);
    const content = JSON.parse(await readFile(lock.path, 'utf8'));
    expect(content.pid).toBe(process.pid);
    expect(await lockDebris(dir)).toEqual({ lock: true, tokens: 1, movedAside: 0, other: [] });
  });

  it('removes old lock-breaking debris when it takes the lock, and keeps young debris', async () => {
    const dir = await tempDir('lock');
    const old = new Date(Date.now() - 60_000);
    for (const name of [`${LOCK_FILE}.break-aaaa`, `${LOCK_FILE}.broken-1-bbbb`, `${LOCK_FILE}.break-young`]) {
      await writeFile(path.join(dir, name), '');
      if (!name.endsWith('young')) await utimes(path.join(dir, name), old, old);
    }
    await writeFile(path.join(dir, 'notes.txt'), 'keep');
    await utimes(path.join(dir, 'notes.txt'), old, old);
    await take(dir);
    expect(await names(dir)).toEqual([LOCK_FILE, `${LOCK_FILE}.break-young`, 'notes.txt']);
  });

  it('does not break a fresh lock of another host, even if that pid does not exist here', async () => {
    const dir = await tempDir('lock');
    await writeForeignLock(dir, { host: 'other-host', pid: await deadPid() }, 5);
    const error = await expectHeld(take(dir, 600));
    expect(error.message).toContain('other-host');
    expect(JSON.parse(await readFile(path.join(dir, LOCK_FILE), 'utf8')).host).toBe('other-host');
  });

  it('breaks at once a lock of this host whose process no longer exists', async () => {
    const dir = await tempDir('lock');
    const pid = await deadPid();
    await writeForeignLock(dir, { host: os.hostname(), pid });
    const warnings: string[] = [];
    await take(dir, 600, warnings);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`process ${pid} no longer exists`);
  });

  it('does not break a fresh lock of a live process on this host', async () => {
    const dir = await tempDir('lock');
    await writeForeignLock(dir, { host: os.hostname(), pid: process.ppid });
    await expectHeld(take(dir, 600));
  });

  it('breaks a lock naming this process that this process does not hold (restarted container, same pid)', async () => {
    const dir = await tempDir('lock');
    await writeForeignLock(dir, { host: os.hostname(), pid: process.pid });
    const warnings: string[] = [];
    await take(dir, 600, warnings);
    expect(warnings[0]).toContain('left by an earlier process');
  });

  it('treats an unreadable fresh lock as held and an unreadable stale lock as stale', async () => {
    const dir = await tempDir('lock');
    const file = path.join(dir, LOCK_FILE);
    await writeFile(file, '');
    const error = await expectHeld(take(dir, 600));
    expect(error.message).toContain('owner unreadable');
    const old = new Date(Date.now() - 3600_000);
    await utimes(file, old, old);
    const warnings: string[] = [];
    await take(dir, 600, warnings);
    expect(warnings[0]).toContain('stale lock');
  });

  it('refreshes the mtime while held (heartbeat), so the lock never looks stale', async () => {
    const dir = await tempDir('lock');
    const lock = await take(dir, 1.5); // heartbeat every 0.5 s
    const old = new Date(Date.now() - 3600_000);
    await utimes(lock.path, old, old);
    await waitFor(async () => Date.now() - (await stat(lock.path)).mtimeMs < 5_000);
    expect((await readLock(dir))?.info?.pid).toBe(process.pid);
    // A contender with the same stale age sees a live lock.
    await expectHeld(acquireLock(dir, { command: 'other', staleSeconds: 1.5 }));
  });

  it('warns when the heartbeat finds its lock file removed', async () => {
    const dir = await tempDir('lock');
    const warnings: string[] = [];
    const lock = await take(dir, 0.3, warnings); // heartbeat every 100 ms
    await unlink(lock.path);
    await waitFor(() => lock.lost);
    expect(warnings.some((w) => w.includes('was removed'))).toBe(true);
  });
});

describe('release', () => {
  it('is idempotent and never removes a lock taken by someone else afterwards', async () => {
    const dir = await tempDir('lock');
    const first = await take(dir);
    await first.release();
    await first.release();
    const second = await take(dir);
    await first.release();
    first.releaseSync();
    expect(await names(dir)).toEqual([LOCK_FILE]);
    expect(JSON.parse(await readFile(second.path, 'utf8')).startedAt).toBe(second.info.startedAt);
  });

  it('leaves a lock file that was replaced by another run (async release)', async () => {
    const dir = await tempDir('lock');
    const lock = await take(dir);
    await unlink(lock.path);
    await writeForeignLock(dir, { host: 'other-host', pid: 1 });
    await lock.release();
    expect(JSON.parse(await readFile(lock.path, 'utf8')).host).toBe('other-host');
  });

  it('leaves a lock file that was replaced by another run (sync release)', async () => {
    const dir = await tempDir('lock');
    const lock = await take(dir);
    await unlink(lock.path);
    await writeForeignLock(dir, { host: 'other-host', pid: 1 });
    lock.releaseSync();
    expect(JSON.parse(await readFile(lock.path, 'utf8')).host).toBe('other-host');
  });

  it('releaseSync removes our own lock', async () => {
    const dir = await tempDir('lock');
    const lock = await take(dir);
    lock.releaseSync();
    expect(await names(dir)).toEqual([]);
    await lock.release(); // no-op afterwards
    const again = await take(dir);
    expect(again.info.pid).toBe(process.pid);
  });
});
