import type { Compression } from '../config.js';

/**
 * Archive names: `<prefix>-<YYYYMMDD>T<HHMMSS>Z[-N].<ext>`, UTC at the start of the run.
 * A second archive in the same second gets `-2`, `-3`, …; sidecars append to the full name.
 */

export const EXTENSIONS: Record<Compression, string> = { gzip: '.tar.gz', zstd: '.tar.zst', none: '.tar' };

export const SHA256_SUFFIX = '.sha256';
export const MANIFEST_SUFFIX = '.manifest.json';
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
}

const NAME_PATTERN = /^(.+)-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:-([1-9]\d{0,5}))?\.(tar\.gz|tar\.zst|tar)$/;

export function formatTimestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

export function archiveFileName(prefix: string, time: Date, compression: Compression, sequence = 1): string {
  const seq = sequence > 1 ? `-${sequence}` : '';
  return `${prefix}-${formatTimestamp(time)}${seq}${EXTENSIONS[compression]}`;
}

/** Parses a file name; anything that does not match the naming pattern exactly is not an archive. */
export function parseArchiveName(name: string): ArchiveName | undefined {
  const m = NAME_PATTERN.exec(name);
  if (!m) return undefined;
  const [, prefix, y, mo, d, h, mi, s, seq, ext] = m;
  const time = new Date(Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!));
  if (Number.isNaN(time.getTime()) || formatTimestamp(time) !== `${y}${mo}${d}T${h}${mi}${s}Z`) return undefined;
  const compression: Compression = ext === 'tar.gz' ? 'gzip' : ext === 'tar.zst' ? 'zstd' : 'none';
  return { name, prefix: prefix!, time, sequence: seq ? Number(seq) : 1, compression };
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

export function manifestName(archive: string): string {
  return archive + MANIFEST_SUFFIX;
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
  if (/\.(tar\.gz|tgz)$/.test(name)) return 'gzip';
  if (/\.(tar\.zst|tzst)$/.test(name)) return 'zstd';
  if (/\.tar$/.test(name)) return 'none';
  return undefined;
}
