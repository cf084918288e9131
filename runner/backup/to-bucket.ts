import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scanSource } from '../archive/preflight.js';
import { excludeMatcher } from '../archive/walk.js';
import { encryptFileInto } from '../archive/encryption.js';
import { type BackupInputs, prepareBackupInputs } from '../consistency/backup-inputs.js';
import { infoFromManifest, serializeInfo } from '../store/info.js';
import {
  type BackupSummary,
  type ManifestFile,
  checkScan,
  manifestHead,
  manifestTail,
  openManifestWriter,
  startHelper,
  summarize,
  write,
} from '../commands/backup.js';
import type { BucketBackupConfig } from '../config.js';
import type { Manifest } from '../archive/manifest.js';
import type { AgeRecipient } from '../archive/age/index.js';
import type { RunContext } from '../context.js';
import { IntegrityError } from '../errors.js';
import { count, humanBytes } from '../log.js';
import type { Repository } from '../repository/repository.js';
import { compareNewestFirst, manifestName } from '../store/naming.js';
import { pickArchiveName } from './name.js';
import { pruneBucket, underBucketLock } from './offsite.js';

/**
 * Layout (b), `backup --remote` without --dest: the archive streams straight into the bucket
 * (no local copy, no temporary file of archive size; memory bounded by the upload's parts in
 * flight). The proof is the one a local backup makes while writing: every compressed piece
 * decoded back (compress.ts), the tar stream parsed back to its end marker and checked entry by
 * entry against the manifest, the SHA-256 computed on the bytes sent; then the bucket's commit
 * checks size and stored sha256 with HEAD, and writes `.sha256` and, last, the manifest. Then
 * the bucket's retention runs.
 *
 * Steps: lock → abort leftover uploads → scan → name from the bucket's listing →
 * createArchive(sizeHint) → pack/compress/append+drain → check → commit → prune.
 */
export async function backupToBucket(config: BucketBackupConfig, ctx: RunContext): Promise<BackupSummary> {
  return underBucketLock(config.offsite, 'backup', config.lockStaleSeconds, ctx, (bucket) => backupInto(bucket, config, ctx));
}

async function backupInto(bucket: Repository, config: BucketBackupConfig, ctx: RunContext): Promise<BackupSummary> {
  const started = ctx.now();
  // Dumps checked and SQLite databases copied before anything is written (a failure: no archive, nothing pruned).
  const inputs = await prepareBackupInputs(config, excludeMatcher(config.excludes), ctx);
  try {
    return await archiveInto(bucket, config, inputs, started, ctx);
  } finally {
    inputs.release();
  }
}

async function archiveInto(bucket: Repository, config: BucketBackupConfig, inputs: BackupInputs, started: Date, ctx: RunContext): Promise<BackupSummary> {
  const { log } = ctx;
  const scan = scanSource(inputs.root, inputs.exclude);
  checkScan(config, scan, ctx);
  const sourceBytes = scan.bytes + inputs.extraBytes;
  const name = await chooseName(bucket, config, started, ctx);
  log.info('backup.start', `backing up ${config.source} (${humanBytes(scan.bytes)} in ${count(scan.files, 'file')}) into ${bucket.location}/${name}`, {
    archive: name,
    source: config.source,
    remote: bucket.location,
    compression: config.compression,
    compressionLevel: config.level,
    sourceBytes: scan.bytes,
    files: scan.files,
  });
  // The source size bounds the archive (plus tar headers): enough for the part plan.
  const sink = await bucket.createArchive(name, { sizeHint: Math.ceil(sourceBytes * 1.05) + scan.entries * 1024 + 1024 * 1024, signal: ctx.signal });
  // The manifest is written as the archive is, into a scratch file of its own (mode 0600) in the
  // temporary directory — a manifest, never anything of the archive's size — then streamed up as
  // the manifest object last.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pvc-backup-manifest-'));
  const forgetScratch = ctx.cleanup.add('remove the manifest scratch file', () => fs.rmSync(scratch, { recursive: true, force: true }));
  const helper = startHelper(config, ctx);
  let manifest: ManifestFile | undefined;
  try {
    const head = manifestHead(config, name, started, ctx);
    manifest = openManifestWriter(path.join(scratch, 'manifest.json'), head, sourceBytes);
    fs.chmodSync(manifest.file, 0o600);
    // Every compressed piece decoded back, every entry compared with the manifest on the way (write.ts).
    const written = await write(config, inputs, sink, manifest.writer, helper, scan, ctx);
    // The bucket checks the stored size and SHA-256 on commit; the file key is not kept longer.
    written.selfCheck?.destroy();
    helper?.close();
    if (sink.bytes !== written.archiveBytes) {
      throw new IntegrityError(`${name}: ${written.archiveBytes} bytes were written but the upload holds ${sink.bytes}; nothing was published`, 'ROUND_TRIP');
    }
    const tail = manifestTail(written, started, ctx);
    manifest.writer.finish(tail);
    fs.fsyncSync(manifest.fd);
    manifest.close();
    const sidecars = config.recipients ? encryptedSidecars(scratch, name, manifest.file, { ...head, ...tail }, config.recipients) : { manifest: { file: manifest.file } };
    const stored = await sink.commit({ sha256: written.sha256, ...sidecars });
    log.info('backup.verified', `${name} verified while uploading and checked in ${bucket.location}: ${count(written.entryCount, 'entry')}, sha256 ${stored.sha256}`, {
      archive: name,
      location: stored.location,
    });
    await pruneBucket(bucket, config.prefix, config.offsite, ctx);
    const summary = summarize(name, written, started, ctx, stored.location);
    log.info(
      'backup.done',
      `backup ${name} complete in ${bucket.location}: ${humanBytes(summary.bytesIn)} in ${count(summary.files, 'file')} -> ${humanBytes(summary.bytesOut)} in ${summary.durationSeconds}s`,
      { ...summary },
    );
    return summary;
  } catch (error) {
    await sink.abort();
    throw error;
  } finally {
    manifest?.close();
    helper?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
    forgetScratch();
  }
}

async function chooseName(bucket: Repository, config: BucketBackupConfig, started: Date, ctx: RunContext): Promise<string> {
  // Incomplete uploads and orphaned sidecars hold their names too: a new archive never takes one.
  const listing = await bucket.list(config.prefix);
  const all = [...listing.archives, ...listing.incomplete].sort(compareNewestFirst);
  const taken = new Set([...all.map((a) => a.name), ...listing.orphans]);
  return pickArchiveName({ prefix: config.prefix, compression: config.compression, encrypted: config.recipients !== undefined, started, newest: all[0], taken: (n) => taken.has(n), log: ctx.log });
}

/**
 * An encrypted archive's sidecars for the bucket: the manifest encrypted to the archive's
 * recipients (from its private plain copy in the scratch directory) and the plain info record.
 */
function encryptedSidecars(scratch: string, name: string, plainManifest: string, summary: Manifest, recipients: readonly AgeRecipient[]) {
  const file = path.join(scratch, manifestName(name));
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    encryptFileInto(fd, plainManifest, recipients);
  } finally {
    fs.closeSync(fd);
  }
  return { manifest: { file }, info: serializeInfo(infoFromManifest(summary)) };
}
