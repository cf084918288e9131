import { readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Manifest } from '../archive/manifest.js';
import { describeSystemError } from '../errors.js';
import type { RetentionHealth } from '../retention.js';
import { fsyncDirectory } from './atomic.js';
import { type ArchiveInfo, readManifest } from './catalog.js';
import { type InfoRecord, readInfo } from './info.js';
import { infoName, manifestName, sha256Name, sidecarNames, sidecarOwners } from './naming.js';

/**
 * Deleting archives with their sidecars. The archive goes first and that deletion is made
 * durable before its sidecars go: an interrupted prune can leave a sidecar without its
 * archive (an orphan, cleaned by the next prune) but never an archive without its checksum
 * and manifest (which would make it look foreign and unverifiable).
 */

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
}

/** Deletes one archive, then its sidecars (`.sha256`, the manifest, an encrypted archive's info record). Returns the names actually removed. */
export async function deleteArchive(dest: string, name: string): Promise<string[]> {
  const removed: string[] = [];
  try {
    await unlink(path.join(dest, name));
    removed.push(name);
    await fsyncDirectory(dest);
  } catch (error) {
    ignoreMissing(error);
  }
  for (const sidecar of sidecarNames(name)) {
    try {
      await unlink(path.join(dest, sidecar));
      removed.push(sidecar);
    } catch (error) {
      ignoreMissing(error);
    }
  }
  return removed;
}

/**
 * Sidecars (`.sha256`, manifests, info records) of archives of `prefix` whose archive no longer
 * exists: leftovers of an interrupted prune. Only sidecars of names that follow the naming
 * pattern with exactly this prefix, and only regular files, are considered. Sorted by name.
 */
export async function findOrphanedSidecars(dest: string, prefix: string): Promise<string[]> {
  const entries = await readdir(dest, { withFileTypes: true });
  const names = new Set(entries.map((e) => e.name));
  const orphans: string[] = [];
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const name = entry.name;
    const owners = sidecarOwners(name);
    if (!owners || owners[0]!.prefix !== prefix || owners.some((owner) => names.has(owner.name))) continue;
    orphans.push(name);
  }
  return orphans.sort();
}

/**
 * Deletes files by name in `dest`, skipping ones already gone. Returns the names removed and
 * the ones that could not be removed (with the error), so one stubborn file stops nothing.
 */
export async function removeFiles(dest: string, names: readonly string[]): Promise<{ removed: string[]; failed: { name: string; error: unknown }[] }> {
  const removed: string[] = [];
  const failed: { name: string; error: unknown }[] = [];
  for (const name of names) {
    try {
      await unlink(path.join(dest, name));
      removed.push(name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') failed.push({ name, error });
    }
  }
  return { removed, failed };
}

/**
 * An archive's health for retention, from its sidecars without reading the archive: failed when
 * a sidecar is missing, the manifest is unreadable, the file is not as long as the manifest says
 * or the manifest records a failed verification; verified when it records a passed one.
 */
export async function retentionHealth(dest: string, archive: ArchiveInfo): Promise<{ health: RetentionHealth; problem?: string }> {
  return judgeHealth(archive, () => (archive.encrypted ? readInfo(dest, archive.name) : readManifest(dest, archive.name)));
}

/** retentionHealth for an archive of any repository, its manifest read by `load`. */
export async function judgeHealth(
  archive: Pick<ArchiveInfo, 'name' | 'size' | 'hasSha256' | 'hasManifest' | 'encrypted'>,
  load: () => Promise<Manifest | InfoRecord | undefined>,
): Promise<{ health: RetentionHealth; problem?: string }> {
  const failed = (problem: string) => ({ health: 'failed' as const, problem });
  if (!archive.hasSha256) return failed(`its checksum file ${sha256Name(archive.name)} is missing`);
  let manifest;
  try {
    if (archive.encrypted && !archive.hasManifest) return failed(`its encrypted manifest ${manifestName(archive.name)} is missing`);
    // An encrypted archive's manifest needs the key: `load` gives its plain info record instead.
    manifest = archive.hasManifest ? await load() : undefined;
    if (archive.encrypted && !manifest) return failed(`its info record ${infoName(archive.name)} is missing`);
  } catch (error) {
    return failed(`its manifest cannot be read (${describeSystemError(error)})`);
  }
  if (!manifest) return failed(`its manifest ${manifestName(archive.name)} is missing`);
  if (typeof manifest.archiveBytes !== 'number') return failed('its manifest does not record the archive size');
  if (manifest.archiveBytes !== archive.size) return failed(`it is ${archive.size} bytes but its manifest says ${manifest.archiveBytes} (truncated or replaced)`);
  const v = manifest.verification;
  if (v && typeof v === 'object' && v.ok !== true) return failed(`its last verification failed${typeof v.error === 'string' ? `: ${v.error}` : ''}`);
  return { health: v?.ok === true ? 'verified' : 'unverified' };
}
