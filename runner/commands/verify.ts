import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { checkArchive } from '../archive/check.js';
import { MAX_HEADER_BYTES } from '../archive/age/index.js';
import { checkHeadWithoutKey, readHead } from '../archive/encryption.js';
import { hashFile, parseChecksumFile } from '../archive/hash.js';
import { type Manifest, type OpenedManifest, type Verification, writeManifestWithVerification } from '../archive/manifest.js';
import { RestorabilityCheck } from '../archive/safety.js';
import type { OnBucket, VerifyConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { IntegrityError, OperationError, RunnerError, describeSystemError } from '../errors.js';
import { judgeFreshness } from '../freshness.js';
import { ProgressReporter, count, humanBytes } from '../log.js';
import { type ManifestFile, catalogOf, findInRepository, manifestFile, readRepositoryInfo } from '../repository/catalog.js';
import { LocalRepository } from '../repository/local.js';
import { openRepository, targetOf } from '../repository/open.js';
import type { Repository } from '../repository/repository.js';
import { writeFileAtomicSync, writeFileAtomicSyncWith } from '../store/atomic.js';
import { type ArchiveInfo, type DecryptedManifest, choosePrefix, findArchive, openArchiveManifest, openEncryptedManifest, otherPrefixesHint } from '../store/catalog.js';
import { type InfoRecord, infoFromManifest, serializeInfo } from '../store/info.js';
import { infoName, isEncryptedName, manifestName, partialName, sha256Name } from '../store/naming.js';

export interface VerifyOutcome {
  archive: string;
  /** Intact (integrity) and restorable under restore's path-safety rules. */
  ok: boolean;
  /** Intact, whatever restore would say. */
  intact: boolean;
  /** Encrypted and no identity given: only the checksum (and the age header) were checked. */
  checksumOnly?: boolean;
  error?: string;
}

/**
 * Reads the selected archives back completely and compares them with their sidecars; checks
 * in the same pass every entry against restore's path-safety rules (an intact archive that
 * restore would refuse fails too); records the integrity result in each manifest; then, with
 * --schedule, checks that the newest archive is not overdue. Takes no lock: a long verify must
 * not block backups, and an archive pruned meanwhile is reported and skipped.
 */
export async function runVerify(given: VerifyConfig | OnBucket<VerifyConfig>, ctx: RunContext): Promise<VerifyOutcome[]> {
  const { log } = ctx;
  const repository = await openRepository(targetOf(given));
  const { prefix, picked } = given.dest === undefined ? { prefix: given.prefix, picked: undefined } : await choosePrefix(given.dest, given.prefix, given.prefixDefaulted);
  if (picked) log.info('verify.prefix', picked, { prefix });
  const config = { ...given, prefix };
  const selected = await select(repository, config);
  const outcomes: VerifyOutcome[] = [];
  for (const archive of selected) {
    const outcome = await verifyOne(repository, config, archive, ctx);
    if (outcome) outcomes.push(outcome);
  }
  const failed = outcomes.filter((o) => !o.ok);
  const unrestorable = failed.filter((o) => o.intact).length;
  const checksumOnly = outcomes.filter((o) => o.ok && o.checksumOnly).length;
  if (selected.length === 0) {
    const hint = config.dest === undefined ? '' : await otherPrefixesHint(config.dest, config.prefix);
    log.warn('verify.none', `no archives with prefix ${config.prefix} in ${repository.location} to verify${hint}`, { prefix: config.prefix });
  }
  if (outcomes.length > 0) {
    const damaged = failed.length - unrestorable;
    log.info(
      'verify.done',
      `${outcomes.length - failed.length} of ${count(outcomes.length, 'archive')} verified and restorable` +
        (damaged ? `, ${damaged} damaged` : '') +
        (unrestorable ? `, ${unrestorable} intact but refused by restore's safety rules` : '') +
        (checksumOnly ? `; ${checksumOnly} of them encrypted and checked by checksum only (no --age-identity-file)` : ''),
      { verified: outcomes.length - failed.length, failed: failed.length, damaged, unrestorable, checksumOnly },
    );
  }
  const stale = config.freshness ? await checkFresh(repository, config, ctx).catch((error: unknown) => error) : undefined;
  if (stale) ctx.log.error('verify.missing', (stale as Error).message, { code: (stale as RunnerError).code });
  const code = unrestorable === failed.length ? 'UNRESTORABLE' : 'VERIFY_FAILED';
  if (failed.length === 1) throw new IntegrityError(failed[0]!.error!, code);
  if (failed.length > 1) throw new IntegrityError(`${failed.length} archives failed verification: ${failed.map((f) => f.archive).join(', ')}`, code);
  if (stale) throw stale;
  return outcomes;
}

/** The archives to verify. A bucket's archives without a manifest object are never `latest`; `--all` includes them (they fail). */
async function select(repository: Repository, config: VerifyConfig | OnBucket<VerifyConfig>): Promise<ArchiveInfo[]> {
  const { selection } = config;
  const find = (name: string) => (config.dest === undefined ? findInRepository(repository, config.prefix, name) : findArchive(config.dest, config.prefix, name));
  if (selection.kind === 'archive') return [await find(selection.name)];
  const { archives: all, incomplete } = await catalogOf(repository, config.prefix);
  if (selection.kind === 'all') return [...all, ...incomplete];
  if (all.length === 0 && config.freshness) return [];
  if (all.length === 0) return [await find('latest')];
  return [all[0]!];
}

async function verifyOne(repository: Repository, config: VerifyConfig | OnBucket<VerifyConfig>, archive: ArchiveInfo, ctx: RunContext): Promise<VerifyOutcome | undefined> {
  const started = Date.now();
  let read = 0;
  const reporter = new ProgressReporter(ctx.log, 'verify.progress', config.progressSeconds, () => ({
    bytes: read,
    files: 0,
    message: `verifying ${archive.name}: ${humanBytes(read)} of ${humanBytes(archive.size)}`,
  })).start();
  let manifest: OpenedManifest | undefined;
  let decrypted: DecryptedManifest | undefined;
  let forgetDecrypted = () => undefined as void;
  let info: InfoRecord | undefined;
  let restorability: RestorabilityCheck | undefined;
  let copy: ManifestFile | undefined;
  let forgetCopy: (() => void) | undefined;
  try {
    const sha256 = await readChecksum(repository, archive.name);
    if (archive.encrypted) {
      info = await readRepositoryInfo(repository, archive.name);
      if (!config.identities) return await verifyChecksumOnly(repository, archive, sha256, info, ctx);
    }
    // The manifest as a file (a bucket's streamed into a scratch file): its file list is read piece by piece.
    copy = await manifestFile(repository, archive.name, ctx.signal);
    forgetCopy = copy ? ctx.cleanup.add('remove the manifest copy', copy.dispose) : undefined;
    if (copy && archive.encrypted) {
      decrypted = await openEncryptedManifest(path.dirname(copy.file), archive.name, config.identities);
      if (decrypted) forgetDecrypted = ctx.cleanup.add('remove the decrypted manifest', decrypted.close);
      manifest = decrypted;
    } else {
      manifest = copy ? openArchiveManifest(path.dirname(copy.file), archive.name) : undefined;
    }
    if (!manifest) throw new IntegrityError(`${archive.name} has no ${manifestName(archive.name)}; it was not made by pvc-backup or its manifest was deleted`, 'NO_MANIFEST');
    restorability = new RestorabilityCheck({ allowAbsoluteSymlinks: config.allowAbsoluteSymlinks });
    // A directory's file by path (as always); a bucket's object streamed, never written to disk.
    const input = repository instanceof LocalRepository ? path.join(repository.dir, archive.name) : (await repository.read(archive.name, { signal: ctx.signal })).stream;
    const result = await checkArchive(
      input,
      archive.compression,
      { label: archive.name, sha256, manifest },
      { visitor: restorability, onProgress: (p) => (read = p.archiveBytes), ...(archive.encrypted ? { identities: config.identities } : {}) },
    );
    await record(repository, archive.name, copy, manifest.manifest, info, { at: ctx.now().toISOString(), ok: true }, ctx);
    const fields = {
      archive: archive.name,
      entries: result.entries,
      bytes: result.totalBytes,
      sha256: result.sha256,
      seconds: Math.round((Date.now() - started) / 10) / 100,
    };
    const refusal = restorability.finish();
    if (refusal) {
      const message = `${archive.name} is intact but restore would refuse it: archive entry ${JSON.stringify(refusal.entryPath)} ${refusal.reason}`;
      ctx.log.error('verify.unrestorable', message, { ...fields, restorable: false, entry: refusal.entryPath, code: 'UNRESTORABLE' });
      return { archive: archive.name, ok: false, intact: true, error: message };
    }
    ctx.log.info('verify.ok', `${archive.name} verified and restorable: ${count(result.entries, 'entry')}, ${humanBytes(result.totalBytes)}, sha256 ${result.sha256}`, { ...fields, restorable: true });
    return { archive: archive.name, ok: true, intact: true };
  } catch (error) {
    if ((await repository.stat(archive.name).catch(() => ({}))) === undefined) {
      ctx.log.warn('verify.vanished', `${archive.name} was deleted while being verified (pruned by a backup?); skipped`, { archive: archive.name });
      return undefined;
    }
    if (!(error instanceof IntegrityError)) {
      throw error instanceof RunnerError ? error : new OperationError(`verifying ${archive.name} failed: ${describeSystemError(error)}`, 'VERIFY_IO');
    }
    // Decompression and tar errors do not know the file they came from; the message must name it.
    const message = error.message.includes(archive.name) ? error.message : `${archive.name}: ${error.message}`;
    // A wrong identity says nothing about the archive: its recorded state stays.
    if ((manifest || info) && error.code !== 'AGE_NO_MATCH') {
      // The failure is reported either way; a manifest that cannot be rewritten keeps its old record.
      await record(repository, archive.name, copy, manifest?.manifest, info, { at: ctx.now().toISOString(), ok: false, error: message }, ctx).catch(() => undefined);
    }
    ctx.log.error('verify.failed', message, { archive: archive.name, code: error.code });
    return { archive: archive.name, ok: false, intact: false, error: message };
  } finally {
    restorability?.close();
    decrypted?.close();
    forgetDecrypted();
    reporter.stop();
    copy?.dispose();
    forgetCopy?.();
  }
}

async function readChecksum(repository: Repository, name: string): Promise<string> {
  const bytes = await repository.readSmall(sha256Name(name));
  if (bytes === undefined) {
    throw new IntegrityError(`${name} has no ${sha256Name(name)} checksum file; it was not made by pvc-backup or the checksum was deleted`, 'NO_CHECKSUM');
  }
  return parseChecksumFile(bytes.toString('utf8'), name);
}

/**
 * Stores the verification result in the manifest (streamed through a hidden partial), or for an
 * encrypted archive in its plain info record (the manifest stays as the recipients' key sealed
 * it), unless the archive is gone by now.
 */
async function record(
  repository: Repository,
  name: string,
  copy: ManifestFile | undefined,
  manifest: Manifest | undefined,
  info: InfoRecord | undefined,
  verification: Verification,
  ctx: RunContext,
): Promise<void> {
  const encrypted = isEncryptedName(name);
  // An encrypted archive whose info record is missing gets a new one from its decrypted manifest.
  const infoRecord = encrypted ? (info ?? (manifest && infoFromManifest(manifest))) : undefined;
  if (encrypted && !infoRecord) return;
  if (!(repository instanceof LocalRepository)) {
    if ((await repository.stat(name)) === undefined) return;
    if (infoRecord) {
      await repository.putSidecar(infoName(name), serializeInfo({ ...infoRecord, verification }), { signal: ctx.signal });
      return;
    }
    // The new manifest is streamed from the copy into a scratch file beside it, then one PutObject
    // replaces the manifest object atomically.
    if (!copy) return;
    const updated = `${copy.file}.verified`;
    const fd = fs.openSync(updated, 'wx', 0o600);
    try {
      writeManifestWithVerification(copy.file, verification, fd);
    } finally {
      fs.closeSync(fd);
    }
    await repository.putSidecar(manifestName(name), { file: updated }, { signal: ctx.signal });
    return;
  }
  const dest = repository.dir;
  if (!fs.existsSync(path.join(dest, name))) return;
  const sidecar = encrypted ? infoName(name) : manifestName(name);
  // A signal may land while the new sidecar is being written: its hidden partial must not stay behind.
  const partial = path.join(dest, partialName(sidecar));
  const forget = ctx.cleanup.add('remove the partial sidecar', () => fs.rmSync(partial, { force: true }));
  try {
    if (infoRecord) writeFileAtomicSync(dest, sidecar, serializeInfo({ ...infoRecord, verification }));
    else writeFileAtomicSyncWith(dest, sidecar, (fd) => writeManifestWithVerification(path.join(dest, sidecar), verification, fd));
  } finally {
    forget();
  }
}

/**
 * An encrypted archive without an identity: everything that can be proven without the key, and
 * a line that says so. The file must have the SHA-256 of its `.sha256` (and the size and SHA-256
 * of its info record) and start with a well-formed age header. Not proven: that it decrypts,
 * decompresses and matches its manifest. The recorded verification state is left as it was.
 */
async function verifyChecksumOnly(repository: Repository, archive: ArchiveInfo, sha256: string, info: InfoRecord | undefined, ctx: RunContext): Promise<VerifyOutcome> {
  const started = Date.now();
  const { head, ...onDisk } = await hashWithHead(repository, archive.name, ctx.signal);
  const header = checkHeadWithoutKey(head, archive.name);
  if (onDisk.sha256 !== sha256) {
    throw new IntegrityError(`${archive.name}: checksum mismatch (file has sha256 ${onDisk.sha256}, expected ${sha256}); the archive is damaged`, 'CHECKSUM');
  }
  if (info && (info.sha256 !== sha256 || info.archiveBytes !== onDisk.bytes)) {
    throw new IntegrityError(`${archive.name} does not match its info record ${infoName(archive.name)} (${onDisk.bytes} bytes, info says ${info.archiveBytes}; or another sha256)`, 'INFO');
  }
  ctx.log.info(
    'verify.checksum-only',
    `${archive.name} is encrypted and no --age-identity-file was given: checked its checksum and age header only (sha256 ${onDisk.sha256}, ${count(header.stanzas.length, 'recipient')}); ` +
      'decryption, decompression, the entries and the manifest were NOT checked; pass --age-identity-file for the full check',
    { archive: archive.name, sha256: onDisk.sha256, bytes: onDisk.bytes, recipients: header.stanzas.length, checksumOnly: true, seconds: Math.round((Date.now() - started) / 10) / 100 },
  );
  return { archive: archive.name, ok: true, intact: true, checksumOnly: true };
}

/** The SHA-256 and size of an archive read once end to end, and its first bytes (for the age header). */
async function hashWithHead(repository: Repository, name: string, signal: AbortSignal | undefined): Promise<{ sha256: string; bytes: number; head: Buffer }> {
  if (repository instanceof LocalRepository) {
    const file = path.join(repository.dir, name);
    return { ...(await hashFile(file)), head: readHead(file) };
  }
  const hash = createHash('sha256');
  const head: Buffer[] = [];
  let bytes = 0;
  let kept = 0;
  for await (const chunk of (await repository.read(name, { signal })).stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    if (kept < MAX_HEADER_BYTES) {
      head.push(chunk.subarray(0, MAX_HEADER_BYTES - kept));
      kept += Math.min(chunk.length, MAX_HEADER_BYTES - kept);
    }
  }
  return { sha256: hash.digest('hex'), bytes, head: Buffer.concat(head) };
}

/** Fails (exit 1) when the newest archive is older than the last run the schedule expected by now. */
async function checkFresh(repository: Repository, config: VerifyConfig | OnBucket<VerifyConfig>, ctx: RunContext): Promise<void> {
  const freshness = config.freshness!;
  const [newest] = (await catalogOf(repository, config.prefix)).archives;
  const now = ctx.now();
  const verdict = judgeFreshness(freshness, newest?.time, now);
  const fields = {
    schedule: freshness.schedule,
    timeZone: freshness.timeZone,
    graceSeconds: freshness.graceSeconds,
    expectedSince: verdict.expectedSince.toISOString(),
    newest: newest?.name,
  };
  if (verdict.fresh) {
    ctx.log.info('verify.fresh', `newest archive ${newest!.name} is not older than the last scheduled run (${verdict.expectedSince.toISOString()})`, fields);
    return;
  }
  const what = newest ? `the newest archive ${newest.name} is from ${newest.time.toISOString()}` : `there is no archive with prefix ${config.prefix}`;
  throw new OperationError(
    `backups are missing: ${what}, but schedule "${freshness.schedule}" (${freshness.timeZone}) expected one since ${verdict.expectedSince.toISOString()}; check the backup CronJob's recent Jobs and their logs`,
    'BACKUP_MISSING',
  );
}
