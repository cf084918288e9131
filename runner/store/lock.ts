import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LockHeldError, OperationError, describeSystemError } from '../errors.js';
import type { Logger } from '../log.js';
import { LOCK_FILE } from './naming.js';

/**
 * The directory lock `.pvc-backup.lock`: keeps two runs from writing or pruning the same
 * backup directory at once.
 *
 * - Created with O_EXCL (`open(path, 'wx')`); the content is JSON {host, pid, command, startedAt}.
 * - While held, a heartbeat refreshes the file's mtime every min(30 s, staleSeconds / 3).
 * - A lock whose mtime is older than `staleSeconds` is stale (its holder stopped beating:
 *   killed, node lost, volume moved). So is a lock from this host whose pid no longer exists,
 *   and one naming this very process that this process does not hold (a restarted container
 *   gets the same hostname and, as pid 1, the same pid).
 * - A stale lock is broken with a warning. Contenders that judged the same lock file stale
 *   race to create a break token named after that file's identity (device, inode, mtime, size,
 *   content) with O_EXCL; only the winner breaks it, the others wait and look again. The winner
 *   renames the lock aside to a unique hidden name, checks that it is the very file judged
 *   stale, deletes it, and creates the lock again with O_EXCL (a newcomer may win that, which is
 *   fine). If the renamed file turns out to be live (its holder came back), it is put back
 *   with a hard link, which never overwrites. The final creation is always exclusive, so two
 *   runs can only both believe they hold the lock if a stale-looking holder resumes exactly
 *   while its lock is being broken; its heartbeat then reports the lock as lost.
 * - Break tokens and moved-aside files (`.pvc-backup.lock.break-…`, `.pvc-backup.lock.broken-…`)
 *   are removed by a later acquire once they are 10 s old.
 */

export interface LockInfo {
  host: string;
  pid: number;
  command: string;
  /** ISO time the lock was taken. */
  startedAt: string;
}

export type LockWarning = (message: string, fields: Record<string, unknown>) => void;

export interface LockOptions {
  /** What the holder is doing (backup, prune, restore…), shown to contenders. */
  command: string;
  /** A lock whose heartbeat (mtime) is older than this many seconds is broken. */
  staleSeconds: number;
  /** Receives warnings: a stale lock broken, a lost lock, a failed heartbeat or release. */
  onWarning?: LockWarning;
}

export interface DirectoryLock {
  /** Absolute path of the lock file. */
  readonly path: string;
  readonly info: LockInfo;
  /** Set when the heartbeat found the lock file removed or replaced by someone else. */
  readonly lost: boolean;
  /** Stops the heartbeat and removes the lock file if it is still ours. Idempotent; never throws. */
  release(): Promise<void>;
  /** The same, synchronously, for signal and exit handlers. */
  releaseSync(): void;
}

/** Sends lock warnings to a logger as `lock.warning` events. */
export function logLockWarnings(log: Logger): LockWarning {
  return (message, fields) => log.warn('lock.warning', message, fields);
}

/** Hidden debris of lock breaking; never matches the archive pattern, removed once old. */
const BREAK_TOKEN_PREFIX = `${LOCK_FILE}.break-`;
const BROKEN_PREFIX = `${LOCK_FILE}.broken-`;
const DEBRIS_MAX_AGE_MS = 10_000;

/** Lock files this process holds right now (absolute paths). */
const heldByThisProcess = new Set<string>();

export function lockPath(dir: string): string {
  return path.resolve(dir, LOCK_FILE);
}

interface Observed {
  dev: number;
  ino: number;
  mtimeMs: number;
  size: number;
  raw: string;
  info: LockInfo | undefined;
}

function parseInfo(raw: string): LockInfo | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockInfo> | null;
    if (
      value &&
      typeof value === 'object' &&
      typeof value.host === 'string' &&
      typeof value.pid === 'number' &&
      typeof value.command === 'string' &&
      typeof value.startedAt === 'string'
    ) {
      return { host: value.host, pid: value.pid, command: value.command, startedAt: value.startedAt };
    }
  } catch {
    // unreadable content: the holder may be between creating and writing the file
  }
  return undefined;
}

function isErrno(error: unknown, ...codes: string[]): boolean {
  return codes.includes((error as NodeJS.ErrnoException)?.code ?? '');
}

/** Reads metadata and content through one descriptor, so both describe the same file. */
async function observe(file: string): Promise<Observed | undefined> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
  try {
    const st = await handle.stat();
    const raw = await handle.readFile('utf8');
    return { dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size, raw, info: parseInfo(raw) };
  } finally {
    await handle.close();
  }
}

function observeSync(file: string): Observed | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
  try {
    const st = fs.fstatSync(fd);
    const raw = fs.readFileSync(fd, 'utf8');
    return { dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size, raw, info: parseInfo(raw) };
  } finally {
    fs.closeSync(fd);
  }
}

function sameFile(a: Observed, b: Observed): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.size === b.size && a.raw === b.raw;
}

/** Whether a process exists on this host. Unknown answers count as alive (never break a live lock). */
function processExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return !isErrno(error, 'ESRCH');
  }
}

/** Reads the current lock of a directory, if any (for diagnostics). */
export async function readLock(dir: string): Promise<{ info: LockInfo | undefined; mtime: Date } | undefined> {
  const seen = await observe(lockPath(dir));
  return seen && { info: seen.info, mtime: new Date(seen.mtimeMs) };
}

function staleReason(file: string, seen: Observed, staleSeconds: number): string | undefined {
  const ageSeconds = (Date.now() - seen.mtimeMs) / 1000;
  if (ageSeconds > staleSeconds) {
    return `its heartbeat is ${Math.round(ageSeconds)}s old (stale after ${staleSeconds}s)`;
  }
  const info = seen.info;
  if (info && info.host === os.hostname()) {
    if (info.pid === process.pid) {
      if (!heldByThisProcess.has(file)) return `it names this process (pid ${info.pid}) but was left by an earlier process on this host`;
    } else if (!processExists(info.pid)) {
      return `process ${info.pid} no longer exists on this host`;
    }
  }
  return undefined;
}

function describeHolder(seen: Observed): string {
  const info = seen.info;
  return info ? `${info.command} pid ${info.pid} on host ${info.host}, started ${info.startedAt}` : 'owner unreadable';
}

function heldError(dir: string, file: string, seen: Observed, staleSeconds: number): LockHeldError {
  const age = Math.max(0, Math.round((Date.now() - seen.mtimeMs) / 1000));
  return new LockHeldError(
    `${dir} is locked by another pvc-backup run (${describeHolder(seen)}, heartbeat ${age}s ago); ` +
      `wait for it to finish, or if that run is gone delete ${file} (a lock without heartbeat for ${staleSeconds}s is broken automatically)`,
  );
}

/** Says plainly when the volume is full: not even the few bytes of a lock file fit. */
function describeLockError(error: unknown): string {
  if (isErrno(error, 'ENOSPC', 'EDQUOT')) {
    return 'the backup volume is full (no space left on device, not even for the lock file); free space (lower keep-last or delete old archives) or enlarge the volume';
  }
  return describeSystemError(error);
}

/**
 * Creates the lock file exclusively. Returns its identity, or undefined when it already exists.
 *
 * Synchronous on purpose: a signal handler runs between JavaScript steps, never during a
 * synchronous system call, so it cannot find the file half-made or miss it. A file created by
 * an async open still in flight on the thread pool could appear after the handler's cleanup
 * and stay behind, locking DEST for the next run. From the moment the file exists until a
 * HeldLock takes over, an 'exit' listener (the CLI's signal handler emits 'exit') removes it.
 */
async function tryCreate(file: string, content: string): Promise<{ observed: Observed; abandon: () => void } | undefined> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o644);
  } catch (error) {
    if (isErrno(error, 'EEXIST')) return undefined;
    throw new OperationError(`cannot create lock file ${file}: ${describeLockError(error)}`, 'LOCK', { cause: error });
  }
  const abandon = () => {
    try {
      fs.unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.once('exit', abandon);
  heldByThisProcess.add(file);
  try {
    fs.writeFileSync(fd, content);
    fs.fsyncSync(fd);
    const st = fs.fstatSync(fd);
    return { observed: { dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size, raw: content, info: parseInfo(content) }, abandon };
  } catch (error) {
    heldByThisProcess.delete(file);
    process.removeListener('exit', abandon);
    abandon();
    throw new OperationError(`cannot write lock file ${file}: ${describeLockError(error)}`, 'LOCK', { cause: error });
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // nothing to do
    }
  }
}

/** Puts back a lock that was moved aside by mistake, without ever overwriting a newer one. */
async function putBack(aside: string, file: string, warn: LockWarning): Promise<void> {
  try {
    await fsp.link(aside, file);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return; // nothing left to put back
    if (!isErrno(error, 'EEXIST')) {
      // No hard links on this file system: rename back unless a lock appeared meanwhile.
      if (!fs.existsSync(file)) {
        await fsp.rename(aside, file).catch(() => undefined);
        return;
      }
    }
    await fsp.unlink(aside).catch(() => undefined);
    warn(`a lock on ${path.dirname(file)} was replaced while a stale lock was being broken; the run that held it will notice and warn`, { lock: file });
    return;
  }
  await fsp.unlink(aside).catch(() => undefined);
}

/** Names a lock file's exact identity: a token per stale lock lets only one contender break it. */
function identityKey(seen: Observed): string {
  return createHash('sha256').update(`${seen.dev}:${seen.ino}:${seen.mtimeMs}:${seen.size}:${seen.raw}`).digest('hex').slice(0, 24);
}

type BreakOutcome = 'broken' | 'busy' | 'changed';

/**
 * Removes a stale lock. Only the contender that creates the break token for this exact lock
 * file (O_EXCL) may break it, so contenders that judged the same file stale cannot take turns
 * removing each other's fresh locks. The token stays behind until it is old (cleaned by a later
 * acquire): a slow contender still acting on its old observation finds it and backs off.
 * The lock is renamed aside and checked to be the file judged stale before it is deleted (its
 * holder may have come back); anything else is put back.
 */
async function breakStale(dir: string, file: string, seen: Observed, reason: string, warn: LockWarning): Promise<BreakOutcome> {
  const base = path.dirname(file);
  const token = path.join(base, BREAK_TOKEN_PREFIX + identityKey(seen));
  try {
    await (await fsp.open(token, 'wx', 0o644)).close();
  } catch (error) {
    if (!isErrno(error, 'EEXIST')) throw new OperationError(`cannot break stale lock ${file}: ${describeSystemError(error)}`, 'LOCK', { cause: error });
    // Someone else is breaking this very lock. If they died doing it, their token goes stale.
    const st = await fsp.stat(token).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > DEBRIS_MAX_AGE_MS) await fsp.unlink(token).catch(() => undefined);
    return 'busy';
  }
  const aside = path.join(base, `${BROKEN_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    await fsp.rename(file, aside);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return 'changed'; // released meanwhile
    throw new OperationError(`cannot break stale lock ${file}: ${describeSystemError(error)}`, 'LOCK', { cause: error });
  }
  const moved = await observe(aside);
  if (!moved) return 'changed';
  if (!sameFile(moved, seen)) {
    // The holder came back (heartbeat) or released and a new run locked: that lock is live.
    await putBack(aside, file, warn);
    return 'changed';
  }
  await fsp.unlink(aside).catch(() => undefined);
  warn(`breaking stale lock on ${dir} held by ${describeHolder(seen)}: ${reason}`, {
    lock: file,
    holderHost: seen.info?.host,
    holderPid: seen.info?.pid,
    holderCommand: seen.info?.command,
    holderStartedAt: seen.info?.startedAt,
    heartbeat: new Date(seen.mtimeMs).toISOString(),
  });
  return 'broken';
}

/** Removes break tokens and moved-aside locks left by earlier lock breaking, once they are old. */
async function removeLockDebris(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    if (!name.startsWith(BREAK_TOKEN_PREFIX) && !name.startsWith(BROKEN_PREFIX)) continue;
    const file = path.join(dir, name);
    const st = await fsp.lstat(file).catch(() => undefined);
    if (st?.isFile() && Date.now() - st.mtimeMs > DEBRIS_MAX_AGE_MS) await fsp.unlink(file).catch(() => undefined);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Takes the lock of a backup directory or throws LockHeldError (exit 4) naming the holder.
 * Breaks a stale lock with a warning first (see the module comment for what counts as stale).
 */
export async function acquireLock(dir: string, options: LockOptions): Promise<DirectoryLock> {
  if (!(options.staleSeconds > 0)) throw new RangeError(`staleSeconds must be more than 0, got ${options.staleSeconds}`);
  const warn: LockWarning = options.onWarning ?? (() => undefined);
  const file = lockPath(dir);
  const info: LockInfo = { host: os.hostname(), pid: process.pid, command: options.command, startedAt: new Date().toISOString() };
  const content = JSON.stringify(info) + '\n';
  // Retrying only happens while a lock is being released or broken: a few milliseconds.
  const deadline = Date.now() + 5_000;

  for (let attempt = 0; attempt < 50 && Date.now() < deadline; attempt++) {
    const mine = await tryCreate(file, content);
    if (mine) {
      try {
        await removeLockDebris(path.dirname(file));
        return new HeldLock(file, info, mine.observed, options.staleSeconds, warn);
      } finally {
        // The HeldLock has its own exit listener now (or creating it failed and the file goes).
        process.removeListener('exit', mine.abandon);
      }
    }
    let seen: Observed | undefined;
    try {
      seen = await observe(file);
    } catch (error) {
      throw new OperationError(`cannot read lock file ${file}: ${describeSystemError(error)}`, 'LOCK', { cause: error });
    }
    if (!seen) continue; // released between our attempt and the read
    const reason = staleReason(file, seen, options.staleSeconds);
    if (!reason) throw heldError(dir, file, seen, options.staleSeconds);
    const outcome = await breakStale(dir, file, seen, reason, warn);
    if (outcome === 'busy') await sleep(10 + Math.random() * 40);
  }
  const seen = await observe(file);
  if (seen) throw heldError(dir, file, seen, options.staleSeconds);
  throw new OperationError(`cannot take lock ${file}: it keeps changing; is another run starting and stopping in a loop?`, 'LOCK');
}

class HeldLock implements DirectoryLock {
  lost = false;
  private released = false;
  /** The lock file is gone (or was never ours to remove): set once a release has finished. */
  private removed = false;
  private releasing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private beating = false;
  private readonly onExit = () => this.releaseSync();

  constructor(
    readonly path: string,
    readonly info: LockInfo,
    private readonly identity: Observed,
    staleSeconds: number,
    private readonly warn: LockWarning,
  ) {
    const interval = Math.max(50, Math.min(30_000, (staleSeconds * 1000) / 3));
    this.timer = setInterval(() => void this.beat(), interval);
    this.timer.unref();
    process.once('exit', this.onExit);
  }

  private isOurs(seen: { dev: number; ino: number } | undefined): boolean {
    return seen !== undefined && seen.dev === this.identity.dev && seen.ino === this.identity.ino;
  }

  private async beat(): Promise<void> {
    if (this.released || this.beating) return;
    this.beating = true;
    try {
      let st: fs.Stats | undefined;
      try {
        st = await fsp.stat(this.path);
      } catch (error) {
        if (!isErrno(error, 'ENOENT')) throw error;
      }
      if (this.released) return;
      if (!this.isOurs(st)) {
        this.markLost(st ? 'replaced by another run' : 'removed');
        return;
      }
      const now = new Date();
      await fsp.utimes(this.path, now, now);
    } catch (error) {
      if (!this.released) this.warn(`cannot refresh lock heartbeat on ${this.path}: ${describeSystemError(error)}`, { lock: this.path });
    } finally {
      this.beating = false;
    }
  }

  private markLost(how: string): void {
    if (this.lost) return;
    this.lost = true;
    this.stopHeartbeat();
    this.warn(`lock file ${this.path} was ${how} while this run held it; another run may now use the directory`, { lock: this.path });
  }

  private stopHeartbeat(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    process.removeListener('exit', this.onExit);
  }

  release(): Promise<void> {
    if (this.releasing) return this.releasing;
    if (this.released) return Promise.resolve();
    this.released = true;
    this.stopHeartbeat();
    this.releasing = (async () => {
      try {
        const seen = await observe(this.path);
        if (seen && this.isOurs(seen) && seen.raw === this.identity.raw) await fsp.unlink(this.path);
      } catch (error) {
        if (!isErrno(error, 'ENOENT')) this.warn(`cannot remove lock file ${this.path}: ${describeSystemError(error)}`, { lock: this.path });
      } finally {
        this.removed = true;
        heldByThisProcess.delete(this.path);
      }
    })();
    return this.releasing;
  }

  releaseSync(): void {
    // Also while an async release is still in flight: a signal handler runs this and then ends the
    // process, so the async unlink might never happen.
    if (this.removed) return;
    this.released = true;
    this.stopHeartbeat();
    try {
      const seen = observeSync(this.path);
      if (seen && this.isOurs(seen) && seen.raw === this.identity.raw) fs.unlinkSync(this.path);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) this.warn(`cannot remove lock file ${this.path}: ${describeSystemError(error)}`, { lock: this.path });
    } finally {
      this.removed = true;
      heldByThisProcess.delete(this.path);
    }
  }
}
