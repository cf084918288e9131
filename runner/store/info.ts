import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Manifest, Verification } from '../archive/manifest.js';
import type { Compression } from '../config.js';
import { IntegrityError } from '../errors.js';
import { infoName } from './naming.js';

/**
 * The plain `<stem>.info.json` beside an encrypted archive: what list, latest, retention and a
 * checksum-only verify need, and nothing that names a file (the manifest holding the names is
 * encrypted). Verification results of encrypted archives are recorded here, since the manifest
 * cannot be rewritten without the recipients' keys.
 */
export const INFO_FORMAT = 1;

export interface InfoRecord {
  format: number;
  prefix: string;
  archive: string;
  createdAt: string;
  compression: Compression;
  encrypted: true;
  /** Size of the encrypted archive file. */
  archiveBytes: number;
  /** SHA-256 of the encrypted archive file (as in its `.sha256`). */
  sha256: string;
  entryCount: number;
  /** Regular files among the entries. */
  fileCount: number;
  /** Sum of regular file sizes. */
  totalBytes: number;
  /** File data stored (sparse files without their holes). */
  storedBytes?: number;
  runnerVersion: string;
  verification?: Verification;
}

/** The info record of an encrypted archive, from its (plaintext) manifest's head and tail. */
export function infoFromManifest(manifest: Manifest): InfoRecord {
  return {
    format: INFO_FORMAT,
    prefix: manifest.prefix,
    archive: manifest.archive,
    createdAt: manifest.createdAt,
    compression: manifest.compression,
    encrypted: true,
    archiveBytes: manifest.archiveBytes,
    sha256: manifest.sha256,
    entryCount: manifest.entryCount,
    fileCount: manifest.fileCount ?? 0,
    totalBytes: manifest.totalBytes,
    ...(manifest.storedBytes !== undefined ? { storedBytes: manifest.storedBytes } : {}),
    runnerVersion: manifest.runnerVersion,
    ...(manifest.verification ? { verification: manifest.verification } : {}),
  };
}

export function serializeInfo(info: InfoRecord): string {
  return JSON.stringify(info, null, 2) + '\n';
}

/** The info record of an encrypted archive; undefined when there is none, IntegrityError when it is not one. */
export async function readInfo(dest: string, archiveName: string): Promise<InfoRecord | undefined> {
  const file = path.join(dest, infoName(archiveName));
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseInfo(text, file);
}

export function parseInfo(text: string, label: string): InfoRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new IntegrityError(`info record ${label} is not valid JSON (${(error as Error).message})`, 'INFO');
  }
  const info = value as InfoRecord;
  if (!info || typeof info !== 'object' || Array.isArray(info) || info.encrypted !== true || typeof info.sha256 !== 'string' || typeof info.archiveBytes !== 'number') {
    throw new IntegrityError(`info record ${label} is not a pvc-backup info record (encrypted, sha256, archiveBytes)`, 'INFO');
  }
  return info;
}
