import { IntegrityError } from '../errors.js';

/** The `.sha256` sidecar in `sha256sum` format, so `sha256sum -c` works with standard tools. */
export function formatChecksumFile(sha256: string, archiveName: string): string {
  return `${sha256}  ${archiveName}\n`;
}

export function parseChecksumFile(text: string, archiveName: string): string {
  const match = /^([0-9a-f]{64}) [ *](.+)\n?$/.exec(text);
  if (!match) throw new IntegrityError(`${archiveName}.sha256 is not in sha256sum format; it may be damaged`, 'CHECKSUM_FILE');
  if (match[2] !== archiveName) {
    throw new IntegrityError(`${archiveName}.sha256 names "${match[2]}" instead of ${archiveName}; it belongs to another archive`, 'CHECKSUM_FILE');
  }
  return match[1]!;
}
