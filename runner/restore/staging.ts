import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { type EntryMeta, applyMeta, applyTimes, removeTree } from '../archive/extract.js';
import { fsPath } from '../archive/names.js';
import { sortedNames } from '../archive/listing.js';
import { OperationError, describeSystemError } from '../errors.js';
import type { Logger } from '../log.js';
import { walkOwnFileSystem } from './plan.js';
import { fsyncDirectorySync, writeFileAtomicSync } from '../store/atomic.js';

/**
 * The state a restore keeps while it changes the target, and the crash-safe swap of a replace.
 *
 * Every run has a random id. Its journal lives in DEST (`DEST/.pvc-backup-restore-<id>.journal`,
 * written atomically and fsynced before each phase), where the application cannot write; in the
 * target the run owns only entries named with that id:
 *   - `.pvc-backup-restore-<id>/`      replace: the staging directory the archive is extracted
 *                                      into; merge: an empty marker that says which target it is
 *   - `.pvc-backup-restore-<id>.old/`  replace: the previous top-level entries, during the swap
 *   - `.pvc-backup-restore-<id>.tmpN`  merge: the file being written (anywhere in the tree)
 * The journal records the inode of each directory the moment it is made. Anything else in the
 * target, whatever its name, is the application's data: it is snapshotted, and a replace moves
 * it aside like any other entry.
 *
 * The swap: (1) journal `evacuate`, move every top-level entry (except the run's own and
 * `lost+found`) into `.old/`; (2) journal `install`, move every staged entry into the target and
 * give the target the archive root's mode, owner and mtime; (3) delete `.old/`, fsync the target,
 * then delete the empty staging directory and right after it the journal. The target directory
 * (a mount point) is never renamed or removed.
 * The journal reaches `evacuate` only once the staged tree is complete, verified and synced, so
 * a run that finds it rolls FORWARD.
 *
 * Recovery (`recoverInterrupted`, at the start of every restore, under the DEST lock) acts only
 * on what a journal in DEST records, and only when the target's entries are the directories
 * that run made: real directories (lstat, never through a symlink) on the target's device with
 * the recorded inode, opened with O_NOFOLLOW and then used through their descriptor
 * (/proc/<pid>/fd/N), so renaming or replacing them meanwhile redirects nothing. Anything else is
 * refused with a message, and nothing is changed.
 */

export const CONTROL_PREFIX = '.pvc-backup-restore-';
/** Top-level names a replace restore leaves in place: ext4 volumes have lost+found at their root. */
export const KEEP_IN_PLACE: readonly string[] = ['lost+found'];

const JOURNAL_FORMAT = 2;
const JOURNAL_PATTERN = /^\.pvc-backup-restore-([a-z0-9]+)\.journal$/;

export type SwapPhase = 'extracting' | 'evacuate' | 'install';

/** One restore run, as recorded in DEST. */
export interface RunJournal {
  format: number;
  id: string;
  mode: 'replace' | 'merge';
  phase: SwapPhase;
  /** The archive being restored and the target path (for messages). */
  archive: string;
  target: string;
  startedAt: string;
  /** Inode of `TARGET/.pvc-backup-restore-<id>/`, recorded right after it was made. */
  dirIno?: number;
  /** Inode of `TARGET/.pvc-backup-restore-<id>.old/`, recorded right after it was made. */
  oldIno?: number;
  /** The archive's root entry, applied to the target directory itself after the install. */
  root?: EntryMeta;
  /** Whether owners are restored (running as root). */
  chown: boolean;
}

/** Eight random hex digits: short, so staging adds few bytes to the deepest path. */
export function newRestoreId(): string {
  return randomBytes(4).toString('hex');
}

function controlName(id: string): string {
  return `${CONTROL_PREFIX}${id}`;
}

function journalName(id: string): string {
  return `${controlName(id)}.journal`;
}

/** The prefix of a merge run's temporary files (the extractor appends `.tmpN`). */
export function tempPrefix(id: string): string {
  return controlName(id);
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

// ---------------------------------------------------------------- the journal in DEST

function writeJournal(dest: string, journal: RunJournal): void {
  writeFileAtomicSync(dest, journalName(journal.id), JSON.stringify(journal) + '\n', { mode: 0o600 });
}

function deleteJournal(dest: string, id: string): void {
  fs.rmSync(`${dest}/${journalName(id)}`, { force: true });
  fsyncDirectorySync(dest);
}

function readJournals(dest: string): RunJournal[] {
  const journals: RunJournal[] = [];
  for (const entry of fs.readdirSync(dest, { withFileTypes: true })) {
    const match = JOURNAL_PATTERN.exec(entry.name);
    if (!match || !entry.isFile()) continue;
    const file = `${dest}/${entry.name}`;
    let value: RunJournal;
    try {
      value = JSON.parse(fs.readFileSync(file, 'utf8')) as RunJournal;
    } catch (error) {
      throw new OperationError(`cannot read the restore journal ${file} (${describeSystemError(error)}); an interrupted restore needs a manual look`, 'JOURNAL');
    }
    if (value?.format !== JOURNAL_FORMAT || value.id !== match[1] || !['extracting', 'evacuate', 'install'].includes(value.phase) || !['replace', 'merge'].includes(value.mode)) {
      throw new OperationError(`restore journal ${file} is not one this version wrote; an interrupted restore needs a manual look`, 'JOURNAL');
    }
    journals.push(value);
  }
  return journals.sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
}

// ---------------------------------------------------------------- directories the run made

/**
 * /proc/<pid>/fd/N names the opened directory itself, whatever happens to its name meanwhile.
 * The pid form rather than `self`: the system-call helper processes use the same paths.
 */
let procFdWorks: boolean | undefined;

/** A directory this run (or a recorded earlier run) made in the target, opened without following links. */
class OwnDirectory {
  private closed = false;

  private constructor(
    readonly name: string,
    private readonly fd: number,
    /** The path to use for everything inside: through the descriptor where the system allows. */
    readonly path: string,
    readonly ino: number,
  ) {}

  /** Opens `target/name`, checking that it is a real directory on `dev` (with inode `ino` and owner `uid`, when given). */
  static open(target: string, name: string, expect: { dev: number; ino?: number; uid?: number }): OwnDirectory {
    const literal = `${target}/${name}`;
    let fd: number;
    try {
      fd = fs.openSync(literal, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const what = code === 'ELOOP' || code === 'ENOTDIR' ? 'is not a directory (a symlink or a file)' : `cannot be opened (${describeSystemError(error)})`;
      throw new OwnershipError(literal, what);
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.dev !== expect.dev) throw new OwnershipError(literal, 'is on another file system than the target');
      if (expect.ino !== undefined && st.ino !== expect.ino) throw new OwnershipError(literal, 'is not the directory the restore made (its inode differs)');
      if (expect.uid !== undefined && st.uid !== expect.uid) throw new OwnershipError(literal, `is not the directory the restore made (it belongs to uid ${st.uid})`);
      procFdWorks ??= procPathWorks(fd, st.ino);
      return new OwnDirectory(name, fd, procFdWorks ? `/proc/${process.pid}/fd/${fd}` : literal, st.ino);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  /**
   * Makes `target/name` (mode 0700, failing if anything has that name) and opens it; it must
   * still be ours when opened (a directory swapped in meanwhile belongs to someone else), and
   * nobody else may write into it afterwards.
   */
  static create(target: string, name: string): OwnDirectory {
    fs.mkdirSync(`${target}/${name}`, 0o700);
    return OwnDirectory.open(target, name, { dev: fs.lstatSync(target).dev, uid: process.geteuid?.() });
  }

  names(): Generator<string> {
    return sortedNames(this.path);
  }

  isEmpty(): boolean {
    for (const _ of this.names()) return false;
    return true;
  }

  /**
   * Deletes everything inside, then the directory itself by name — only while that name still
   * is this directory (the application may have renamed it; then the empty directory stays where
   * it was moved).
   */
  remove(target: string): void {
    for (const name of this.names()) removeTree(fsPath(`${this.path}/${name}`));
    this.close();
    const st = lstatOrUndefined(`${target}/${this.name}`);
    if (st?.isDirectory() && st.ino === this.ino) fs.rmdirSync(`${target}/${this.name}`);
  }

  /** Idempotent: a descriptor number closed twice could meanwhile belong to another file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

function procPathWorks(fd: number, ino: number): boolean {
  try {
    return fs.statSync(`/proc/${process.pid}/fd/${fd}`).ino === ino;
  } catch {
    return false;
  }
}

/** A target entry named like a run's own directory that is not what that run made: recovery refuses to touch it. */
class OwnershipError extends OperationError {
  constructor(
    readonly entry: string,
    readonly reason: string,
  ) {
    super(`${entry} ${reason}`, 'RECOVERY_REFUSED');
  }
}

function lstatOrUndefined(p: string): fs.Stats | undefined {
  return lstatBytes(fsPath(p));
}

function lstatBytes(p: string | Buffer): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Removes `target/name` when it is an empty real directory (made by a run that was killed before recording it). */
function removeIfEmptyDirectory(target: string, name: string, dev: number): void {
  const st = lstatOrUndefined(`${target}/${name}`);
  if (!st) return;
  if (!st.isDirectory() || st.dev !== dev) throw new OwnershipError(`${target}/${name}`, 'is not a directory the restore made');
  try {
    fs.rmdirSync(`${target}/${name}`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new OwnershipError(`${target}/${name}`, 'is not empty, but the journal records no directory of that name');
    }
    throw error;
  }
}

// ---------------------------------------------------------------- moving entries

const isRoot = (): boolean => process.getuid?.() === 0;

function exists(p: string): boolean {
  return lstatOrUndefined(p) !== undefined;
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

/** Moves `from` into `dir` as `name` (or `name.N` when that is taken). Renames move links, never what they point to. */
function moveInto(from: string, dir: string, name: string): void {
  prepareMove(from);
  for (let n = 1; ; n++) {
    const to = `${dir}/${n === 1 ? name : `${name}.${n}`}`;
    if (exists(to)) continue;
    fs.renameSync(fsPath(from), fsPath(to));
    return;
  }
}

/** Top-level names of the target a run never moves: its own entries and lost+found. */
function staysInPlace(name: string, id: string): boolean {
  return name === controlName(id) || name === `${controlName(id)}.old` || KEEP_IN_PLACE.includes(name);
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
  if (isRoot()) return;
  const uid = process.getuid?.();
  for (const name of sortedNames(fsPath(target))) {
    if (KEEP_IN_PLACE.includes(name)) continue;
    const st = fs.lstatSync(fsPath(`${target}/${name}`));
    if (st.isDirectory() && (st.mode & 0o200) === 0 && st.uid !== uid) {
      throw new OperationError(
        `cannot move ${target}/${name} aside: it is a read-only directory of uid ${st.uid} and this restore runs as uid ${uid}; run the restore as root or use --mode merge`,
        'TARGET_NOT_WRITABLE',
      );
    }
  }
}

// ---------------------------------------------------------------- one run

/**
 * This run's state: its journal in DEST and its directory in the target. `begin` records the
 * run before it makes anything in the target.
 */
export class RestoreRun {
  private old: OwnDirectory | undefined;

  private constructor(
    private readonly dest: string,
    private readonly target: string,
    private readonly journal: RunJournal,
    /** Replace: the staging directory; merge: the marker. */
    private readonly dir: OwnDirectory,
  ) {}

  static begin(dest: string, target: string, run: { mode: RunJournal['mode']; archive: string; chown: boolean }): RestoreRun {
    const id = newRestoreId();
    const journal: RunJournal = { format: JOURNAL_FORMAT, id, mode: run.mode, phase: 'extracting', archive: run.archive, target, startedAt: new Date().toISOString(), chown: run.chown };
    writeJournal(dest, journal);
    let dir: OwnDirectory;
    try {
      dir = OwnDirectory.create(target, controlName(id));
    } catch (error) {
      deleteJournal(dest, id);
      throw error;
    }
    journal.dirIno = dir.ino;
    writeJournal(dest, journal);
    return new RestoreRun(dest, target, journal, dir);
  }

  get id(): string {
    return this.journal.id;
  }

  /** Where a replace extracts: the staging directory, through its descriptor. */
  get stagingPath(): string {
    return this.dir.path;
  }

  /** Names this run has in the target's top level (the pre-restore snapshot leaves them out). */
  get topLevelNames(): string[] {
    return [controlName(this.id)];
  }

  /**
   * Removes what the run made in the target and its journal: a replace that did not reach the
   * swap (the target's data was never touched), or a merge that is over. Synchronous, for
   * signal handlers.
   */
  discard(): void {
    this.old?.close();
    this.dir.remove(this.target);
    fsyncDirectorySync(this.target);
    deleteJournal(this.dest, this.id);
  }

  /**
   * Swaps the complete, verified staging directory in. Entirely synchronous, so a SIGTERM is
   * handled only after it finished; a SIGKILL or power cut in the middle is completed by
   * `recoverInterrupted` on the next run.
   */
  swapIn(root: EntryMeta | undefined, log?: Logger): void {
    const { target, journal } = this;
    journal.root = root;
    try {
      this.old = OwnDirectory.create(target, `${controlName(this.id)}.old`);
      journal.oldIno = this.old.ino;
      journal.phase = 'evacuate';
      writeJournal(this.dest, journal);
      evacuate(target, this.id, this.old);
      journal.phase = 'install';
      writeJournal(this.dest, journal);
      install(target, this.dir, this.old, log);
    } catch (error) {
      // An ordinary error (not a kill): put the previous entries back rather than leave a journal
      // that would fail the same way on every later run.
      this.rollBack(error, log);
    }
    finishSwap(this.dest, target, journal, this.dir, this.old);
  }

  private rollBack(error: unknown, log?: Logger): never {
    const { target } = this;
    try {
      if (this.journal.phase === 'install') {
        for (const name of sortedNames(fsPath(target))) if (!staysInPlace(name, this.id)) moveInto(`${target}/${name}`, this.dir.path, name);
      }
      if (this.old) for (const name of this.old.names()) fs.renameSync(fsPath(`${this.old.path}/${name}`), fsPath(`${target}/${name}`));
      fsyncDirectorySync(target);
      this.old?.remove(target);
      this.discard();
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
}

function evacuate(target: string, id: string, old: OwnDirectory): void {
  for (const name of sortedNames(fsPath(target))) {
    if (staysInPlace(name, id)) continue;
    moveInto(`${target}/${name}`, old.path, name);
  }
  fsyncDirectorySync(old.path);
  fsyncDirectorySync(target);
}

function install(target: string, staging: OwnDirectory, old: OwnDirectory, log: Logger | undefined): void {
  for (const name of staging.names()) {
    const from = `${staging.path}/${name}`;
    const to = `${target}/${name}`;
    if (exists(to)) {
      if (KEEP_IN_PLACE.includes(name)) {
        log?.info('restore.kept', `kept the target's own ./${name}; the archive's copy was not restored`, { path: `./${name}` });
        continue;
      }
      // Written into the target during the swap (the application should be stopped): moved aside too.
      moveInto(to, old.path, name);
    }
    const mode = prepareMove(from);
    fs.renameSync(fsPath(from), fsPath(to));
    if (mode !== undefined) fs.chmodSync(fsPath(to), mode);
  }
  fsyncDirectorySync(target);
}

function finishSwap(dest: string, target: string, journal: RunJournal, staging: OwnDirectory, old: OwnDirectory | undefined): void {
  old?.remove(target);
  if (journal.root) applyMeta(target, journal.root, journal.chown);
  fsyncDirectorySync(target);
  // The empty staging directory goes last, right before the journal: while it is there, the next
  // run knows this target as the journal's and finishes from here. Removed before the fsync, a
  // kill during it left a journal that every later run reported as another target's.
  staging.remove(target);
  deleteJournal(dest, journal.id);
  // Removing the run's directories touched the target's mtime once more.
  if (journal.root) applyTimes(target, journal.root);
}

// ---------------------------------------------------------------- recovery

export interface Recovery {
  /** Swaps completed from their journal. */
  completed: string[];
  /** Swaps undone because their staging directory had vanished. */
  rolledBack: string[];
  /** Runs that never reached the swap (or merges), whose leftovers were removed. */
  removed: string[];
  /** Journals of runs into another target, kept. */
  elsewhere: string[];
}

/** The entries a recorded run has in this target, without touching anything. */
function recordedEntries(target: string, journal: RunJournal): string[] {
  return [controlName(journal.id), `${controlName(journal.id)}.old`].filter((name) => exists(`${target}/${name}`));
}

/**
 * Finishes or cleans up what an interrupted restore into this target left behind, as recorded
 * in DEST: replace runs that reached the swap are rolled forward, earlier ones and merges are
 * cleaned up. Acts only on the directories a journal records (see the module comment); throws
 * (changing nothing of that run) when one of them is not what the run made.
 */
export function recoverInterrupted(dest: string, target: string, log?: Logger): Recovery {
  const recovery: Recovery = { completed: [], rolledBack: [], removed: [], elsewhere: [] };
  const dev = fs.lstatSync(target).dev;
  for (const journal of readJournals(dest)) {
    if (recordedEntries(target, journal).length === 0) {
      if (journal.dirIno === undefined) {
        // Killed between writing the journal and making its directory: nothing was made.
        deleteJournal(dest, journal.id);
        continue;
      }
      recovery.elsewhere.push(journal.id);
      log?.warn(
        'restore.recorded-elsewhere',
        `${dest}/${journalName(journal.id)} records an interrupted ${journal.mode} restore of ${journal.archive} (started ${journal.startedAt}) into another target; ` +
          `restore into that volume again to finish it, or delete the journal if that volume is gone`,
        { id: journal.id, archive: journal.archive, startedAt: journal.startedAt },
      );
      continue;
    }
    try {
      recoverRun(dest, target, dev, journal, recovery, log);
    } catch (error) {
      if (!(error instanceof OwnershipError)) throw error;
      throw new OperationError(
        `an interrupted restore of ${journal.archive} (journal ${dest}/${journalName(journal.id)}) cannot be finished: ${error.message}; ` +
          'nothing was changed; look at it, move it out of the target, then delete the journal',
        'RECOVERY_REFUSED',
      );
    }
  }
  return recovery;
}

function recoverRun(dest: string, target: string, dev: number, journal: RunJournal, recovery: Recovery, log?: Logger): void {
  const name = controlName(journal.id);
  const openRecorded = (entry: string, ino: number | undefined): OwnDirectory | undefined => {
    if (!exists(`${target}/${entry}`)) return undefined;
    if (ino === undefined) {
      removeIfEmptyDirectory(target, entry, dev);
      return undefined;
    }
    return OwnDirectory.open(target, entry, { dev, ino });
  };
  const dir = openRecorded(name, journal.dirIno);
  // Before the swap the journal records no .old: one can only be the empty directory of a run killed while making it.
  const old = openRecorded(`${name}.old`, journal.phase === 'extracting' ? undefined : journal.oldIno);

  if (journal.mode === 'merge') {
    const removed = removeMergeTemporaries(target, dev, journal.id);
    dir?.remove(target);
    fsyncDirectorySync(target);
    deleteJournal(dest, journal.id);
    recovery.removed.push(journal.id);
    log?.warn(
      'restore.recovered',
      `an earlier merge restore of ${journal.archive} (started ${journal.startedAt}) was interrupted: its temporary files were removed (${removed}); ` +
        'the target holds a mix of old and restored files, so restore again (or restore its pre-restore snapshot)',
      { id: journal.id, archive: journal.archive, removed },
    );
    return;
  }
  if (journal.phase === 'extracting') {
    dir?.remove(target);
    fsyncDirectorySync(target);
    deleteJournal(dest, journal.id);
    recovery.removed.push(journal.id);
    log?.warn('restore.leftovers-removed', `removed the staging directory of an interrupted restore of ${journal.archive} (it never reached the swap; the data in the target was not changed)`, {
      id: journal.id,
      archive: journal.archive,
    });
    return;
  }
  if (!dir) {
    // Cannot happen unless someone deleted the staged tree: put the old entries back.
    if (old) for (const entry of old.names()) if (!exists(`${target}/${entry}`)) fs.renameSync(fsPath(`${old.path}/${entry}`), fsPath(`${target}/${entry}`));
    fsyncDirectorySync(target);
    if (old && old.isEmpty()) old.remove(target);
    else old?.close();
    deleteJournal(dest, journal.id);
    recovery.rolledBack.push(journal.id);
    log?.warn('restore.recovered', `an interrupted restore of ${journal.archive} had lost its staged data; the previous contents were put back`, { id: journal.id, archive: journal.archive });
    return;
  }
  const aside = old ?? OwnDirectory.create(target, `${name}.old`);
  if (!old) {
    journal.oldIno = aside.ino;
    writeJournal(dest, journal);
  }
  if (journal.phase === 'evacuate') {
    evacuate(target, journal.id, aside);
    journal.phase = 'install';
    writeJournal(dest, journal);
  }
  install(target, dir, aside, log);
  finishSwap(dest, target, journal, dir, aside);
  recovery.completed.push(journal.id);
  log?.warn('restore.recovered', `completed the swap of an interrupted restore of ${journal.archive} (it was killed while swapping; its data was complete and verified)`, {
    id: journal.id,
    archive: journal.archive,
    startedAt: journal.startedAt,
  });
}

/** Deletes a merge run's temporary files (`.pvc-backup-restore-<id>.tmpN`) anywhere in the target, never following links or leaving the file system. */
function removeMergeTemporaries(target: string, dev: number, id: string): number {
  const pattern = new RegExp(`^${controlName(id).replace(/[.]/g, '\\.')}\\.tmp\\d+$`);
  let removed = 0;
  walkOwnFileSystem(target, (path, name) => {
    if (!pattern.test(name)) return;
    const st = lstatBytes(path);
    if (st && !st.isDirectory() && st.dev === dev) {
      fs.unlinkSync(path);
      removed++;
    }
  });
  return removed;
}

/** Entries in the target that recorded interrupted runs left (for dry runs, which change nothing). */
export function pendingRecovery(dest: string, target: string): string[] {
  return readJournals(dest)
    .flatMap((journal) => recordedEntries(target, journal))
    .sort();
}
