import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backupToBucket } from '../backup/to-bucket.js';
import { type ArchiveSource, SNAPSHOT_KEEP, snapshotFailed, snapshotPrefix, snapshotSettings } from '../commands/restore.js';
import type { BucketBackupConfig, BucketRestoreConfig, RestoreConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { IntegrityError, OperationError } from '../errors.js';
import { parseChecksumFile } from '../archive/hash.js';
import type { OpenedManifest } from '../archive/manifest.js';
import { collectAllGarbage } from '../memory.js';
import { findInRepository, manifestFile } from '../repository/catalog.js';
import { type DecryptedManifest, identityNeeded, openArchiveManifest, openEncryptedManifest } from '../store/catalog.js';
import { openRepository } from '../repository/open.js';
import type { S3Settings } from '../repository/s3-settings.js';
import { manifestName, sha256Name } from '../store/naming.js';

/**
 * Where a restore's bytes come from when they are in a bucket: the only difference from a
 * local restore. Everything else — the lock, the journal, staging, the swap only after the
 * SHA-256 and manifest agree, the pre-restore snapshot — is the local restore's, in DEST (or,
 * without DEST, in a private state directory, with the snapshot in the bucket).
 */

/** A restore from the bucket without --dest: its local state lives in STATE_DIR, its snapshot in the bucket. */
export type BucketOnlyRestore = RestoreConfig & { remote: S3Settings; bucketOnly: true };

/**
 * Where `restore --remote` without --dest keeps what a restore records (its lock, its journal,
 * request records): a directory of its own in the runner's temporary directory, made by this
 * tool with mode 0700, never a symlink, never one another user owns — a place the application
 * whose volume is restored cannot write, as DEST is. It lives as long as the pod: a container
 * restarted in the same pod finishes or undoes an interrupted swap from the journal; a new pod
 * starts without it (a request then runs again, which the contract allows).
 */
export function stateDirectory(base = os.tmpdir()): string {
  const dir = path.join(base, 'pvc-backup-restore-state');
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new OperationError(`${dir} is not a private directory of this user (a symlink, another owner or open permissions); remove it or pass --dest DIR`, 'STATE_DIR');
  }
  return dir;
}

/** restore --remote keeps its lock, journal and pre-restore snapshot in DEST; without DEST, see stateDirectory. */
export function withDest(config: RestoreConfig | BucketRestoreConfig): RestoreConfig | (RestoreConfig & { remote: S3Settings }) | BucketOnlyRestore {
  if (!('remote' in config)) return config;
  if (config.dest === undefined) return { ...config, dest: stateDirectory(), bucketOnly: true };
  return { ...config, dest: config.dest };
}

export function isBucketOnly(config: RestoreConfig): config is BucketOnlyRestore {
  return (config as Partial<BucketOnlyRestore>).bucketOnly === true;
}

/**
 * The pre-restore snapshot of a bucket-only restore: the current target, streamed into the
 * bucket by the bucket-only backup's steps, as `<prefix>-pre-restore`, the newest SNAPSHOT_KEEP kept.
 */
export async function snapshotToBucket(config: BucketOnlyRestore, ctx: RunContext, leaveOut: readonly string[]): Promise<string> {
  const prefix = snapshotPrefix(config.prefix);
  ctx.log.info('restore.snapshot', `saving the current contents of ${config.target} as a pre-restore snapshot in the bucket (prefix ${prefix}, newest ${SNAPSHOT_KEEP} kept)`, {
    target: config.target,
    prefix,
  });
  const snapshot: BucketBackupConfig = {
    ...snapshotSettings(config, leaveOut),
    dest: undefined,
    retention: undefined,
    offsite: { settings: config.remote, retention: { last: SNAPSHOT_KEEP } },
  };

  try {
    return (await backupToBucket(snapshot, ctx)).archive;
  } catch (error) {
    throw snapshotFailed(config, error);
  }
}

/**
 * The archive in the bucket: `latest` is the newest archive with a manifest object (an upload
 * without one is never restored as latest); the `.sha256` and manifest objects are the
 * expectation the streamed bytes must meet before anything is swapped in.
 */
/** What opening an archive for reading needs: where it is, which one, and how far to trust it. */
export type ArchiveRequest = Pick<RestoreConfig, 'prefix' | 'archive' | 'identities' | 'allowUnverified'> & { dest: string; remote?: S3Settings };

export async function openBucketArchive(config: ArchiveRequest & { remote: S3Settings }, ctx: RunContext): Promise<ArchiveSource> {
  const { log } = ctx;
  const bucket = await openRepository({ kind: 'bucket', settings: config.remote });
  const info = await findInRepository(bucket, config.prefix, config.archive);
  const checksum = await bucket.readSmall(sha256Name(info.name));
  const sha256 = checksum === undefined ? undefined : parseChecksumFile(checksum.toString('utf8'), info.name);
  // The manifest object streamed into a scratch file: its file list is read piece by piece during the restore.
  const copy = await manifestFile(bucket, info.name, ctx.signal);
  const forget = copy ? ctx.cleanup.add('remove the manifest copy', copy.dispose) : () => {};
  let decrypted: DecryptedManifest | undefined;
  const dispose = () => {
    decrypted?.close();
    copy?.dispose();
    forget();
  };
  if (info.encrypted && !config.identities) {
    dispose();
    throw identityNeeded(info.name, 'restoring it');
  }
  let opened: OpenedManifest | undefined;
  try {
    // An encrypted archive's manifest is decrypted into a private copy of its own (closed with the rest).
    if (copy && info.encrypted) opened = decrypted = await openEncryptedManifest(path.dirname(copy.file), info.name, config.identities);
    else opened = copy ? openArchiveManifest(path.dirname(copy.file), info.name) : undefined;
  } catch (error) {
    if (!(error instanceof IntegrityError) || !config.allowUnverified) {
      dispose();
      throw error;
    }
    log.warn('restore.manifest-ignored', `${error.message}; ignored because of --allow-unverified`, { archive: info.name });
  }
  const manifest = opened?.manifest;
  if (opened?.layout === 'whole') collectAllGarbage();
  const verified = sha256 !== undefined && manifest !== undefined;
  if (!verified) {
    const missing = [sha256 === undefined ? sha256Name(info.name) : '', manifest === undefined ? manifestName(info.name) : ''].filter(Boolean).join(' and ');
    if (!config.allowUnverified) {
      dispose();
      throw new IntegrityError(
        `${info.name} in ${bucket.location} cannot be verified: ${missing} ${missing.includes(' and ') ? 'are' : 'is'} missing (an interrupted upload, or deleted objects); ` +
          'pass --allow-unverified to restore it anyway (every path-safety rule still applies)',
        'UNVERIFIED',
      );
    }
    log.warn('restore.unverified', `restoring ${info.name} from ${bucket.location} WITHOUT integrity verification (--allow-unverified): ${missing} missing`, { archive: info.name, missing });
  }
  return {
    name: info.name,
    file: `${bucket.location}/${info.name}`,
    open: async () => (await bucket.read(info.name, { signal: ctx.signal })).stream,
    compression: info.compression,
    expectation: { label: info.name, sha256, manifest: opened },
    verified,
    manifest,
    opened,
    info: { ...info, foreign: false },
    release: dispose,
    // The decryptor refuses a wrong key at the header, before the first entry reaches staging.
    identities: info.encrypted ? config.identities : undefined,
  };
}
