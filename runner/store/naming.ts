import type { Compression } from '../config.js';

/**
 * Archive names: `<prefix>-<YYYYMMDD>T<HHMMSS>Z[-N].<ext>[.age]`, UTC at the start of the run.
 * A second archive in the same second gets `-2`, `-3`, …. Sidecars of a plain archive append to
 * its full name (`.sha256`, `.manifest.json`); an encrypted archive (`.age`) has its `.sha256`
 * on the full name and, on its stem `<prefix>-<time>Z[-N]`, the encrypted manifest
 * (`.manifest.json.age`) and the plain info record (`.info.json`).
 */

export const EXTENSIONS: Record<Compression, string> = { gzip: '.tar.gz', zstd: '.tar.zst', none: '.tar' };

export const SHA256_SUFFIX = '.sha256';
export const MANIFEST_SUFFIX = '.manifest.json';
/** The extension an encrypted archive adds after its tar extension. */
export const AGE_SUFFIX = '.age';
export const ENCRYPTED_MANIFEST_SUFFIX = '.manifest.json.age';
export const INFO_SUFFIX = '.info.json';
export const LOCK_FILE = '.pvc-backup.lock';
/** Prefix suffix for the safety archive a restore takes of the target before changing it. */
export const PRE_RESTORE_SUFFIX = '-pre-restore';

export interface ArchiveName {
  name: string;
  prefix: string;
  /** Start of the run, from the name (second precision). */
  time: Date;
  /** 1 for the plain name, 2 for `-2`, …: creation order within one second. */
  sequence: number;
  compression: Compression;
  /** Encrypted with age (`.age`): its manifest is encrypted too, and an info record sits beside it. */
  encrypted: boolean;
}

const STEM = String.raw`(.+)-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:-([1-9]\d{0,5}))?`;
const NAME_PATTERN = new RegExp(`^${STEM}\\.(tar\\.gz|tar\\.zst|tar)(\\.age)?$`);
const STEM_PATTERN = new RegExp(`^${STEM}$`);

export function formatTimestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

export function archiveFileName(prefix: string, time: Date, compression: Compression, sequence = 1, encrypted = false): string {
  const seq = sequence > 1 ? `-${sequence}` : '';
  return `${prefix}-${formatTimestamp(time)}${seq}${EXTENSIONS[compression]}${encrypted ? AGE_SUFFIX : ''}`;
}

type ParsedStem = Pick<ArchiveName, 'prefix' | 'time' | 'sequence'>;

function parseStemParts(m: RegExpExecArray): ParsedStem | undefined {
  const [, prefix, y, mo, d, h, mi, s, seq] = m;
  const time = new Date(Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!));
  if (Number.isNaN(time.getTime()) || formatTimestamp(time) !== `${y}${mo}${d}T${h}${mi}${s}Z`) return undefined;
  return { prefix: prefix!, time, sequence: seq ? Number(seq) : 1 };
}

/** Parses a file name; anything that does not match the naming pattern exactly is not an archive. */
export function parseArchiveName(name: string): ArchiveName | undefined {
  const m = NAME_PATTERN.exec(name);
  if (!m) return undefined;
  const stem = parseStemParts(m);
  if (!stem) return undefined;
  const ext = m[9];
  const compression: Compression = ext === 'tar.gz' ? 'gzip' : ext === 'tar.zst' ? 'zstd' : 'none';
  return { name, ...stem, compression, encrypted: m[10] !== undefined };
}

/** `<prefix>-<time>Z[-N]`: the archive name without its tar (and age) extension. */
export function stemOf(archive: string): string {
  return archive.replace(/\.(tar\.gz|tar\.zst|tar|tgz|tzst)(\.age)?$/, '');
}

/**
 * Newest first: by the time in the name, then by the same-second sequence (never by raw string
 * order or file times). Names equal in both (only possible across extensions, from copies or
 * other tools: the runner never gives two archives the same time and sequence) are ordered by
 * name, so list, latest and prune always agree.
 */
export function compareNewestFirst(a: Pick<ArchiveName, 'name' | 'time' | 'sequence'>, b: Pick<ArchiveName, 'name' | 'time' | 'sequence'>): number {
  return b.time.getTime() - a.time.getTime() || b.sequence - a.sequence || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export function sha256Name(archive: string): string {
  return archive + SHA256_SUFFIX;
}

export function isEncryptedName(archive: string): boolean {
  return archive.endsWith(AGE_SUFFIX);
}

/** The manifest of an archive: `<archive>.manifest.json`, or `<stem>.manifest.json.age` when the archive is encrypted. */
export function manifestName(archive: string): string {
  return isEncryptedName(archive) ? stemOf(archive) + ENCRYPTED_MANIFEST_SUFFIX : archive + MANIFEST_SUFFIX;
}

/** The plain info record of an encrypted archive: `<stem>.info.json`. */
export function infoName(archive: string): string {
  return stemOf(archive) + INFO_SUFFIX;
}

/** Every sidecar an archive has when complete, in the order they are written (the manifest last: in a bucket it marks a finished upload). */
export function sidecarNames(archive: string): string[] {
  return isEncryptedName(archive) ? [sha256Name(archive), infoName(archive), manifestName(archive)] : [sha256Name(archive), manifestName(archive)];
}

/**
 * The archives a file would be a sidecar of, when its name is a sidecar name of the naming
 * pattern: one for `<archive>.sha256` and `<archive>.manifest.json`, the encrypted forms of
 * every compression for `<stem>.manifest.json.age` and `<stem>.info.json`. Undefined otherwise.
 */
export function sidecarOwners(name: string): ArchiveName[] | undefined {
  for (const suffix of [SHA256_SUFFIX, MANIFEST_SUFFIX]) {
    if (!name.endsWith(suffix)) continue;
    const archive = parseArchiveName(name.slice(0, -suffix.length));
    return archive ? [archive] : undefined;
  }
  for (const suffix of [ENCRYPTED_MANIFEST_SUFFIX, INFO_SUFFIX]) {
    if (!name.endsWith(suffix)) continue;
    const m = STEM_PATTERN.exec(name.slice(0, -suffix.length));
    const stem = m ? parseStemParts(m) : undefined;
    if (!stem) return undefined;
    return Object.values(EXTENSIONS).map((ext) => parseArchiveName(`${name.slice(0, -suffix.length)}${ext}${AGE_SUFFIX}`)!);
  }
  return undefined;
}

/** An archive or one of its sidecars, by the naming pattern (what list and prune may touch). */
export function isArchiveOrSidecarName(name: string): boolean {
  return parseArchiveName(name) !== undefined || sidecarOwners(name) !== undefined;
}

/** In-progress files are hidden until complete: `.<name>.partial`. */
export function partialName(name: string): string {
  return `.${name}.partial`;
}

export function isPartialName(name: string): boolean {
  return name.startsWith('.') && name.endsWith('.partial') && name.length > '..partial'.length;
}

/** Guesses the compression of an archive that was not made by this tool, from its extension. */
export function compressionFromExtension(name: string): Compression | undefined {
  if (/\.(tar\.gz|tgz)(\.age)?$/.test(name)) return 'gzip';
  if (/\.(tar\.zst|tzst)(\.age)?$/.test(name)) return 'zstd';
  if (/\.tar(\.age)?$/.test(name)) return 'none';
  return undefined;
}
