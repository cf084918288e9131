import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExcludeMatcher } from '../archive/walk.js';
import type { BackupConfig, BucketBackupConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { count, humanBytes } from '../log.js';
import { DUMPS_ARCHIVE_DIR, checkDumps } from './dumps.js';
import { copySqliteDatabases, findSqliteDatabases, sqliteCompanionExclude } from './sqlite.js';

/**
 * What a backup archives besides the plain files of its source, prepared before the archive is
 * started: the pre-backup dumps (checked first: a failed or empty one stops the backup before
 * anything is written or pruned) and consistent copies of the --sqlite databases. The packer
 * gets them as a "substitute" map (the copy's bytes under the live database's name) and extra
 * trees archived after the source (each dump under ./.pvc-backup-dumps/NAME/).
 */

/** A tree archived after the source, under `archivePath`. */
export interface ExtraTree {
  dir: string;
  archivePath: string;
  exclude: ExcludeMatcher;
}

export interface BackupInputs {
  /** The tree whose root is the archive's root: the source, or an empty directory for a backup of dumps alone. */
  root: string;
  /** The run's exclude matcher, plus the copied databases' companions and a ./.pvc-backup-dumps of the source. */
  exclude: ExcludeMatcher;
  /** Regular files archived with another file's content: source-relative path → the consistent copy. */
  substitutes: ReadonlyMap<string, string>;
  extraTrees: ExtraTree[];
  /** Bytes of the extra trees, for the free-space check. */
  extraBytes: number;
  /** Removes the scratch directory (copies, empty root); idempotent. */
  release(): void;
}

/** Prepares the dumps and SQLite copies of `config`; the caller calls release() when the archive is done. */
export async function prepareBackupInputs(config: BackupConfig | BucketBackupConfig, exclude: ExcludeMatcher, ctx: RunContext): Promise<BackupInputs> {
  const { log } = ctx;
  const extraTrees: ExtraTree[] = [];
  let extraBytes = 0;
  if (config.dumps) {
    const dumps = checkDumps(config.dumps.dir, config.dumps.names);
    const names = new Set(dumps.map((d) => d.name));
    for (const d of dumps) {
      log.info('backup.dump', `pre-backup dump "${d.name}" is complete: ${humanBytes(d.bytes)} in ${count(d.files, 'file')} (${d.startedAt} to ${d.finishedAt})`, { ...d });
      extraBytes += d.bytes;
    }
    // Only the configured dumps' directories; their markers and anything else in the scratch volume stay out.
    const onlyDumps: ExcludeMatcher = (rel, isDirectory) => {
      const top = rel.split('/')[0]!;
      return !names.has(top) || (rel === top && !isDirectory);
    };
    extraTrees.push({ dir: config.dumps.dir, archivePath: DUMPS_ARCHIVE_DIR, exclude: onlyDumps });
  }

  let scratch: string | undefined;
  const remove = () => {
    if (scratch !== undefined) fs.rmSync(scratch, { recursive: true, force: true });
    scratch = undefined;
  };
  const forgetScratch = ctx.cleanup.add('remove the scratch directory', remove);
  const release = () => {
    remove();
    forgetScratch();
  };
  const makeScratch = () => (scratch ??= fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-')));
  try {
    let root = config.source;
    if (root === undefined) {
      root = path.join(makeScratch(), 'root');
      fs.mkdirSync(root, { mode: 0o755 });
      fs.chmodSync(root, 0o755);
    }
    let combined = exclude;
    if (config.dumps) {
      // The archive's ./.pvc-backup-dumps holds this run's dumps only.
      if (fs.existsSync(path.join(root, DUMPS_ARCHIVE_DIR))) {
        log.warn('backup.dumps-dir-in-source', `the source holds ./${DUMPS_ARCHIVE_DIR} (restored from an earlier archive?); it is left out, the archive holds this run's dumps there`, {});
      }
      const base = combined;
      combined = (rel, isDirectory) => rel === DUMPS_ARCHIVE_DIR || rel.startsWith(`${DUMPS_ARCHIVE_DIR}/`) || base(rel, isDirectory);
    }
    const substitutes = new Map<string, string>();
    if (config.sqlite.length > 0) {
      const databases = findSqliteDatabases(root, config.sqlite, combined);
      const copies = await copySqliteDatabases(root, databases, path.join(makeScratch(), 'sqlite'));
      for (const c of copies) {
        substitutes.set(c.rel, c.copy);
        log.info('backup.sqlite', `SQLite database ${c.rel} copied consistently (${c.journalMode} mode, ${humanBytes(c.bytes)}, ${c.copySeconds.toFixed(2)} s) and passed integrity_check`, { ...c });
      }
      const companions = sqliteCompanionExclude(databases);
      const base = combined;
      combined = (rel, isDirectory) => companions(rel, isDirectory) || base(rel, isDirectory);
    }
    return { root, exclude: combined, substitutes, extraTrees, extraBytes, release };
  } catch (error) {
    release();
    throw error;
  }
}
