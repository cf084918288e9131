import type { ArchiveSource } from '../commands/restore.js';
import type { BucketRestoreConfig, RestoreConfig } from '../config.js';
import { IntegrityError, UsageError } from '../errors.js';
import { parseChecksumFile } from '../archive/hash.js';
import type { Manifest } from '../archive/manifest.js';
import type { Logger } from '../log.js';
import { collectAllGarbage } from '../memory.js';
import { findInRepository, readRepositoryManifest } from '../repository/catalog.js';
import { openRepository } from '../repository/open.js';
import type { S3Settings } from '../repository/s3-settings.js';
import { manifestName, sha256Name } from '../store/naming.js';

/**
 * Where a restore's bytes come from when they are in a bucket: the only difference from a
 * local restore. Everything else — the lock, the journal, staging, the swap only after the
 * SHA-256 and manifest agree, the pre-restore snapshot — is the local restore's, in DEST.
 */

/** restore --remote keeps its lock, journal and pre-restore snapshot in DEST. */
export function withDest(config: RestoreConfig | BucketRestoreConfig): RestoreConfig | (RestoreConfig & { remote: S3Settings }) {
  if (!('remote' in config)) return config;
  if (config.dest === undefined) {
    throw new UsageError(
      'restore --remote needs --dest DIR as well: the restore keeps its lock, its journal (to finish or undo an interrupted swap) and the pre-restore snapshot there',
    );
  }
  return { ...config, dest: config.dest };
}

/**
 * The archive in the bucket: `latest` is the newest archive with a manifest object (an upload
 * without one is never restored as latest); the `.sha256` and manifest objects are the
 * expectation the streamed bytes must meet before anything is swapped in.
 */
export async function openBucketArchive(config: RestoreConfig & { remote: S3Settings }, log: Logger): Promise<ArchiveSource> {
  const bucket = await openRepository({ kind: 'bucket', settings: config.remote });
  const info = await findInRepository(bucket, config.prefix, config.archive);
  const checksum = await bucket.readSmall(sha256Name(info.name));
  const sha256 = checksum === undefined ? undefined : parseChecksumFile(checksum.toString('utf8'), info.name);
  let manifest: Manifest | undefined;
  try {
    manifest = await readRepositoryManifest(bucket, info.name);
  } catch (error) {
    if (!(error instanceof IntegrityError) || !config.allowUnverified) throw error;
    log.warn('restore.manifest-ignored', `${error.message}; ignored because of --allow-unverified`, { archive: info.name });
  }
  if (manifest) collectAllGarbage();
  const verified = sha256 !== undefined && manifest !== undefined;
  if (!verified) {
    const missing = [sha256 === undefined ? sha256Name(info.name) : '', manifest === undefined ? manifestName(info.name) : ''].filter(Boolean).join(' and ');
    if (!config.allowUnverified) {
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
    open: async () => (await bucket.read(info.name)).stream,
    compression: info.compression,
    expectation: { label: info.name, sha256, manifest },
    verified,
    manifest,
    info: { ...info, foreign: false },
  };
}
