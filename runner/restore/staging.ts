import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { type EntryMeta, applyMeta, removeTree } from '../archive/extract.js';
import { fsPath } from '../archive/names.js';
import { readNames } from '../archive/walk.js';
import { OperationError, describeSystemError } from '../errors.js';
import type { Logger } from '../log.js';
import { fsyncDirectorySync } from '../store/atomic.js';

/**
 * Staging and the crash-safe swap of a replace restore.
 *
 * Everything restore keeps in the target is a hidden top-level "control" entry named
 * `.pvc-backup-restore-<id>…`:
 *   - `<id>/`          staging: the archive is extracted here (same file system as the target)
 *   - `<id>.old/`      the previous top-level entries, moved aside during the swap
 *   - `<id>.journal`   the swap's phase, written atomically and fsynced before each phase
 *   - `<id>.tmp<N>`    merge mode's temporary file (one at a time)
 *
 * The swap: (1) journal `evacuate`, move every current top-level entry (except control entries
 * and `lost+found`) into `<id>.old/`; (2) journal `install`, move every staged top-level entry
 * into the target, apply the archive root's mode/owner/mtime to the target itself; (3) delete
 * `<id>.old/`, staging and the journal. The target directory (a mount point) is never renamed or
 * removed. The journal is written only once the staged tree is complete, verified and synced,
 * so a run that finds it always rolls FORWARD: in `evacuate` every non-control entry of the
 * target is old, in `install` every one is new. A staging directory without a journal is an
 * extraction that never finished: the old tree was not touched, staging is deleted.
 * `recoverTarget` does this at the start of every restore into the target.
 */

export const CONTROL_PREFIX = '.pvc-backup-restore-';
/** Top-level names a replace restore leaves in place: ext4 volumes have lost+found at their root. */
export const KEEP_IN_PLACE: readonly string[] = ['lost+found'];

const JOURNAL_FORMAT = 1;
const CONTROL_PATTERN = /^\.pvc-backup-restore-([A-Za-z0-9]+)(\.old|\.journal|\.journal\.tmp|\.tmp\d+)?$/;

export function isControlName(name: string): boolean {
  return name.startsWith(CONTROL_PREFIX);
}

/** Eight random hex digits: short, so staging adds few bytes to the deepest path (one restore per target runs at a time). */
export function newRestoreId(): string {
  return randomBytes(4).toString('hex');
}

export interface RestorePaths {
  staging: string;
  old: string;
  journal: string;
  journalTmp: string;
}

export function restorePaths(target: string, id: string): RestorePaths {
  const base = `${target}/${CONTROL_PREFIX}${id}`;
  return { staging: base, old: `${base}.old`, journal: `${base}.journal`, journalTmp: `${base}.journal.tmp` };
}

export type SwapPhase = 'evacuate' | 'install';

export interface Journal {
  format: number;
  id: string;
  phase: SwapPhase;
  /** The archive being restored (for messages). */
  archive: string;
  startedAt: string;
  /** The archive's root entry, applied to the target directory itself after the install. */
  root?: EntryMeta;
  /** Whether owners are restored (running as root). */
  chown: boolean;
}


/**
 * Makes the staged data durable before the swap commits to it: `sync -f DIR` (syncfs of the
 * target's file system), else a global `sync`. Returns false when neither could run.
 */
export function syncFileSystem(dir: string): boolean {
  for (const args of [['-f', dir], []]) {
    const result = spawnSync('sync', args, { stdio: 'ignore' });
    if (!result.error && result.status === 0) return true;
  }
  return false;
}

function writeJournal(paths: RestorePaths, journal: Journal, target: string): void {
  const fd = fs.openSync(paths.journalTmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(journal) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(paths.journalTmp, paths.journal);
  fsyncDirectorySync(target);
}

function readJournal(file: string): Journal {
  let value: Journal;
  try {
    value = JSON.parse(fs.readFileSync(file, 'utf8')) as Journal;
  } catch (error) {
    throw new OperationError(
      `cannot read the restore journal ${file} (${describeSystemError(error)}); an interrupted restore needs a manual look: ` +
        `the previous data is in ${file.replace(/\.journal$/, '.old')}, the new data in ${file.replace(/\.journal$/, '')}`,
      'JOURNAL',
    );
  }
  if (value?.phase !== 'evacuate' && value?.phase !== 'install') {
    throw new OperationError(`restore journal ${file} has an unknown phase; an interrupted restore needs a manual look`, 'JOURNAL');
  }
  return value;
}

const isRoot = (): boolean => process.getuid?.() === 0;

function exists(p: string): boolean {
  try {
    fs.lstatSync(fsPath(p));
    return true;
  } catch {
    return false;
  }
}

/**
 * A directory can be moved to another parent only when its owner may write to it (its `..`
 * changes). As non-root, gives the owner write permission first; returns the mode to put back.
 */
function prepareMove(abs: string): number | undefined {
  if (isRoot()) return undefined;
  const st = fs.lstatSync(fsPath(abs));
  if (!st.isDirectory() || (st.mode & 0o200) !== 0) return undefined;
  fs.chmodSync(fsPath(abs), (st.mode & 0o7777) | 0o200);
  return st.mode & 0o7777;
}

/** Moves `from` into `dir` as `name` (or `name.N` when that is taken). */
function moveInto(from: string, dir: string, name: string): void {
  prepareMove(from);
  for (let n = 1; ; n++) {
    const to = `${dir}/${n === 1 ? name : `${name}.${n}`}`;
    if (exists(to)) continue;
    fs.renameSync(fsPath(from), fsPath(to));
    return;
  }
}

/**
 * Checks, before anything moves, that every top-level entry of the target can be moved aside
 * (as non-root, a directory must be writable by its owner and owned by the running user).
 */
export function checkSwapPossible(target: string): void {
  try {
    fs.accessSync(target, fs.constants.W_OK | fs.constants.X_OK);
  } catch (error) {
    throw new OperationError(`cannot write to the target ${target}: ${describeSystemError(error)}`, 'TARGET_NOT_WRITABLE');
  }
  const root = isRoot();
  const uid = process.getuid?.();
  const device = fs.statSync(target).dev;
  for (const name of readNames(fsPath(target))) {
    if (isControlName(name) || KEEP_IN_PLACE.includes(name)) continue;
    const st = fs.lstatSync(fsPath(`${target}/${name}`));
    if (st.isDirectory() && st.dev !== device) {
      throw new OperationError(
        `cannot move ${target}/${name} aside: it is a separate mount inside the target; unmount it, restore into it separately, or use --mode merge`,
        'TARGET_MOUNT',
      );
    }
    if (!root && st.isDirectory() && (st.mode & 0o200) === 0 && st.uid !== uid) {
      throw new OperationError(
        `cannot move ${target}/${name} aside: it is a read-only directory of uid ${st.uid} and this restore runs as uid ${uid}; run the restore as root or use --mode merge`,
        'TARGET_NOT_WRITABLE',
      );
    }
  }
}

function evacuate(target: string, paths: RestorePaths): void {
  fs.mkdirSync(paths.old, { mode: 0o700, recursive: true });
  for (const name of readNames(fsPath(target))) {
    if (isControlName(name) || KEEP_IN_PLACE.includes(name)) continue;
    moveInto(`${target}/${name}`, paths.old, name);
  }
  fsyncDirectorySync(paths.old);
  fsyncDirectorySync(target);
}

function install(target: string, paths: RestorePaths, log: Logger | undefined): void {
  if (!exists(paths.staging)) return;
  for (const name of readNames(fsPath(paths.staging))) {
    const from = `${paths.staging}/${name}`;
    const to = `${target}/${name}`;
    if (exists(to)) {
      if (KEEP_IN_PLACE.includes(name)) {
        log?.info('restore.kept', `kept the target's own ./${name}; the archive's copy was not restored`, { path: `./${name}` });
        continue;
      }
      // Written into the target during the swap (the application should be stopped): moved aside too.
      fs.mkdirSync(paths.old, { mode: 0o700, recursive: true });
      moveInto(to, paths.old, name);
    }
    const mode = prepareMove(from);
    fs.renameSync(fsPath(from), fsPath(to));
    if (mode !== undefined) fs.chmodSync(fsPath(to), mode);
  }
  fsyncDirectorySync(target);
}

function finishSwap(target: string, paths: RestorePaths, journal: Journal): void {
  removeTree(paths.old);
  removeTree(paths.staging);
  if (journal.root) applyMeta(target, journal.root, journal.chown);
  fs.rmSync(paths.journal, { force: true });
  fsyncDirectorySync(target);
  // Removing the control entries touched the target's mtime once more.
  if (journal.root) fs.utimesSync(target, journal.root.mtime, journal.root.mtime);
}

/**
 * Swaps the complete, verified staging directory in. Entirely synchronous, so a SIGTERM is
 * handled only after it finished; a SIGKILL or power cut in the middle is completed by
 * `recoverTarget` on the next run.
 */
export function swapIn(target: string, journal: Omit<Journal, 'phase' | 'format'>, log?: Logger): void {
  const paths = restorePaths(target, journal.id);
  const full: Journal = { format: JOURNAL_FORMAT, phase: 'evacuate', ...journal };
  writeJournal(paths, full, target);
  try {
    evacuate(target, paths);
    full.phase = 'install';
    writeJournal(paths, full, target);
    install(target, paths, log);
  } catch (error) {
    // An ordinary error (not a kill): put the previous entries back rather than leave a journal
    // that would fail the same way on every later run.
    rollBack(target, paths, full.phase, error, log);
  }
  finishSwap(target, paths, full);
}

function rollBack(target: string, paths: RestorePaths, phase: SwapPhase, error: unknown, log?: Logger): never {
  try {
    if (phase === 'install') {
      for (const name of readNames(fsPath(target))) {
        if (isControlName(name) || KEEP_IN_PLACE.includes(name)) continue;
        moveInto(`${target}/${name}`, paths.staging, name);
      }
    }
    if (exists(paths.old)) for (const name of readNames(fsPath(paths.old))) fs.renameSync(fsPath(`${paths.old}/${name}`), fsPath(`${target}/${name}`));
    fsyncDirectorySync(target);
    fs.rmSync(paths.journal, { force: true });
    removeTree(paths.old);
    removeTree(paths.staging);
    fsyncDirectorySync(target);
  } catch (rollbackError) {
    throw new OperationError(
      `the swap failed (${describeSystemError(error)}) and could not be undone (${describeSystemError(rollbackError)}); the next restore into ${target} completes it from its journal`,
      'SWAP',
      { cause: error },
    );
  }
  log?.error('restore.swap-failed', `the swap failed and was undone; the target holds its previous contents: ${describeSystemError(error)}`, { target });
  throw new OperationError(`swapping the restored data into ${target} failed: ${describeSystemError(error)}; the previous contents were put back`, 'SWAP', { cause: error });
}

export interface Recovery {
  /** Swaps completed from their journal. */
  completed: string[];
  /** Swaps undone because their staging directory had vanished. */
  rolledBack: string[];
  /** Leftover staging directories and temporary files removed. */
  removed: string[];
}

/**
 * Finishes or cleans up what an interrupted restore left in the target: journals are rolled
 * forward, staging directories without a journal and stray temporary files are deleted.
 * An `.old` directory without a journal (never left by restore itself) is kept, with a warning.
 */
export function recoverTarget(target: string, log?: Logger): Recovery {
  const recovery: Recovery = { completed: [], rolledBack: [], removed: [] };
  const names = readNames(fsPath(target)).filter(isControlName);
  if (names.length === 0) return recovery;
  for (const name of names) {
    const match = CONTROL_PATTERN.exec(name);
    if (!match || match[2] !== '.journal') continue;
    const id = match[1]!;
    const paths = restorePaths(target, id);
    const journal = readJournal(paths.journal);
    if (journal.phase === 'evacuate' && !exists(paths.staging)) {
      // Cannot happen unless someone deleted the staged tree: put the old entries back.
      if (exists(paths.old)) for (const entry of readNames(fsPath(paths.old))) if (!exists(`${target}/${entry}`)) fs.renameSync(fsPath(`${paths.old}/${entry}`), fsPath(`${target}/${entry}`));
      fsyncDirectorySync(target);
      fs.rmSync(paths.journal, { force: true });
      if (exists(paths.old) && readNames(fsPath(paths.old)).length === 0) fs.rmdirSync(paths.old);
      recovery.rolledBack.push(id);
      log?.warn('restore.recovered', `an interrupted restore of ${journal.archive} had lost its staged data; the previous contents were put back`, { id, archive: journal.archive });
      continue;
    }
    if (journal.phase === 'evacuate') {
      evacuate(target, paths);
      journal.phase = 'install';
      writeJournal(paths, journal, target);
    }
    install(target, paths, log);
    finishSwap(target, paths, journal);
    recovery.completed.push(id);
    log?.warn('restore.recovered', `completed the swap of an interrupted restore of ${journal.archive} (it was killed while swapping; its data was complete and verified)`, {
      id,
      archive: journal.archive,
      startedAt: journal.startedAt,
    });
  }
  for (const name of readNames(fsPath(target)).filter(isControlName)) {
    const match = CONTROL_PATTERN.exec(name);
    const abs = `${target}/${name}`;
    if (match && match[2] === '.old') {
      log?.warn('restore.leftover-kept', `${abs} holds data moved aside by an interrupted restore whose journal is gone; it was kept, delete it once you have checked it`, { path: abs });
      continue;
    }
    removeTree(fsPath(abs));
    recovery.removed.push(name);
  }
  if (recovery.removed.length > 0) {
    fsyncDirectorySync(target);
    log?.warn('restore.leftovers-removed', `removed ${recovery.removed.length} leftover${recovery.removed.length === 1 ? '' : 's'} of an interrupted restore (it never reached the swap; the data in the target was not changed)`, {
      removed: recovery.removed,
    });
  }
  return recovery;
}

/** Control entries currently in the target (for dry runs, which change nothing). */
export function pendingControlEntries(target: string): string[] {
  return readNames(fsPath(target)).filter(isControlName).sort();
}
