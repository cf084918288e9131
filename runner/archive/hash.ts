import { createHash, hash as cryptoHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { IntegrityError } from '../errors.js';
import { BYTES_PER_TURN, nextTurn } from './turns.js';

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

/**
 * SHA-256 of one file's content as it streams by. Most files arrive in one piece: those are
 * hashed with a single call, much cheaper per file than a streaming Hash. A first piece is kept
 * only until the second arrives, so a buffer that is reused later is never read late.
 */
export class ContentHash {
  private first: Buffer | undefined;
  private hash: Hash | undefined;

  update(piece: Buffer): void {
    if (this.hash) {
      this.hash.update(piece);
    } else if (this.first === undefined) {
      this.first = piece;
    } else {
      this.hash = createHash('sha256').update(this.first).update(piece);
      this.first = undefined;
    }
  }

  /**
   * Feeds `length` zero bytes (a sparse file's hole). SHA-256 has no shortcut for zeros, and a
   * hole of a TiB takes ten minutes to hash. So a long run is hashed in slices with a turn of the
   * event loop after each (see turns.ts); a short one is hashed at once and gives undefined.
   * Nothing else may feed this hash until the promise settles. Once `stop` is aborted (the read
   * failed), the rest is left out: the digest is then wrong and must not be used.
   */
  zeros(length: number, stop?: AbortSignal): Promise<void> | undefined {
    if (length <= BYTES_PER_TURN) {
      this.zerosNow(length);
      return undefined;
    }
    return this.zerosInTurns(length, stop);
  }

  private async zerosInTurns(length: number, stop: AbortSignal | undefined): Promise<void> {
    for (let left = length; left > 0 && !stop?.aborted; left -= BYTES_PER_TURN) {
      this.zerosNow(Math.min(left, BYTES_PER_TURN));
      await nextTurn();
    }
  }

  private zerosNow(length: number): void {
    for (let left = length; left > 0; left -= ZEROS.length) this.update(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
  }

  digest(): string {
    return this.hash ? this.hash.digest('hex') : cryptoHash('sha256', this.first ?? EMPTY, 'hex');
  }
}

const EMPTY = Buffer.alloc(0);
const ZEROS = Buffer.alloc(1024 * 1024);

/**
 * A pipeline stage that feeds every chunk to `hash` as it streams by, tells `seen` of it, and
 * passes it on unchanged (a plain generator: cheaper than a Transform).
 */
export function hashingTap(hash: Hash, seen: (chunk: Buffer) => void): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function* (source) {
    for await (const chunk of source) {
      hash.update(chunk);
      seen(chunk);
      yield chunk;
    }
  };
}

/** SHA-256 and length of a file, read with one reused buffer. */
export async function hashFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  const handle = await open(file, 'r');
  let bytes = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      bytes += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return { sha256: hash.digest('hex'), bytes };
}
