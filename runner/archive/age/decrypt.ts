import { Transform, type TransformCallback } from 'node:stream';
import { TAG_BYTES } from './aead.js';
import { badHeader, badHeaderMac, badPayload, noMatchingIdentity } from './errors.js';
import { type ParsedHeader, type Stanza, parseHeader, verifyHeaderMac } from './header.js';
import type { AgeIdentity } from './identity.js';
import { SCRYPT_STANZA_TYPE } from './scrypt.js';
import { ChunkCipher, PAYLOAD_NONCE_BYTES, SEALED_CHUNK_BYTES, payloadKey } from './stream.js';

/**
 * Decrypts an age file as it streams, between the file (or HTTP body) and the decompressor.
 *
 * Plaintext is released chunk by chunk once each chunk authenticates, but the stream only ends
 * cleanly after the final chunk authenticated as final and nothing followed it: truncation
 * (anywhere, even at a chunk boundary), a flipped bit, swapped or dropped chunks, a missing or
 * early final chunk and trailing bytes all end it with an IntegrityError (exit 3). Whoever
 * consumes the plaintext must treat it as unproven until then (restore stages it).
 * Memory: the header (at most 1 MiB) while it arrives, then one sealed chunk carried over, and
 * up to QUEUED_BYTES (1 MiB) queued on each side.
 */
/**
 * Bytes queued on each side: with the zstd lanes taking whole frames, 4 MiB was no faster and
 * cost memory (medium set, zstd: verify 3.16–3.20 → 2.84–2.97 s, peak RSS 136–141 → 112–115 MiB;
 * restore 151–157 → 139–142 MiB).
 */
const QUEUED_BYTES = 1024 * 1024;

export class AgeDecryptor extends Transform {
  private readonly identities: readonly AgeIdentity[];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private cipher: ChunkCipher | undefined;
  private readonly carry = Buffer.allocUnsafe(SEALED_CHUNK_BYTES);
  private carried = 0;
  /** The parsed header, once it has arrived (stanza types and count, for messages). */
  header: ParsedHeader | undefined;
  /** Encrypted bytes taken in so far. */
  encryptedBytes = 0;
  /** Plaintext bytes released so far. */
  plaintextBytes = 0;

  private readonly consumed: ((chunk: Buffer) => void) | undefined;

  constructor(
    identities: readonly AgeIdentity[],
    options: {
      /** Told when an encrypted input chunk is no longer needed (every byte opened or copied), so its buffer can be reused. */
      consumed?: (chunk: Buffer) => void;
    } = {},
  ) {
    super({ readableHighWaterMark: QUEUED_BYTES, writableHighWaterMark: QUEUED_BYTES });
    this.identities = identities;
    this.consumed = options.consumed;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      this.encryptedBytes += chunk.length;
      let sealed = chunk;
      if (!this.cipher) {
        // Kept whole until the header is complete.
        const rest = this.takeHeader(chunk, false);
        if (!rest) return done();
        sealed = rest;
      }
      this.openChunks(sealed);
      this.consumed?.(chunk);
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      if (!this.cipher) {
        const rest = this.takeHeader(Buffer.alloc(0), true);
        if (rest) this.openChunks(rest);
        if (!this.cipher) throw badHeader('the file ends before the payload nonce');
      }
      this.openFinal();
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  /**
   * Collects bytes until the header and payload nonce are complete, then unwraps the file key,
   * checks the header MAC and sets up the payload cipher. Returns the bytes after the nonce.
   */
  private takeHeader(chunk: Buffer, endOfInput: boolean): Buffer | undefined {
    if (chunk.length > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [data];
    const header = parseHeader(data, endOfInput);
    if (!header) return undefined;
    if (data.length < header.length + PAYLOAD_NONCE_BYTES) {
      if (endOfInput) throw badHeader('the file ends inside the payload nonce (truncated)');
      return undefined;
    }
    this.header = header;
    const fileKey = unwrapFileKey(header.stanzas, this.identities);
    try {
      if (!verifyHeaderMac(header, fileKey)) throw badHeaderMac();
      const nonce = data.subarray(header.length, header.length + PAYLOAD_NONCE_BYTES);
      this.cipher = new ChunkCipher(payloadKey(fileKey, nonce));
    } finally {
      fileKey.fill(0);
    }
    this.pending = [];
    this.pendingBytes = 0;
    return data.subarray(header.length + PAYLOAD_NONCE_BYTES);
  }

  /** Opens every sealed chunk that is certainly not the last one (more bytes follow it). */
  private openChunks(chunk: Buffer): void {
    const cipher = this.cipher!;
    let position = 0;
    if (this.carried > 0 && this.carried + chunk.length > SEALED_CHUNK_BYTES) {
      position = SEALED_CHUNK_BYTES - this.carried;
      chunk.copy(this.carry, this.carried, 0, position);
      this.openMiddle(cipher, this.carry);
      this.carried = 0;
    }
    while (this.carried === 0 && chunk.length - position > SEALED_CHUNK_BYTES) {
      this.openMiddle(cipher, chunk.subarray(position, position + SEALED_CHUNK_BYTES));
      position += SEALED_CHUNK_BYTES;
    }
    chunk.copy(this.carry, this.carried, position);
    this.carried += chunk.length - position;
  }

  /** A chunk that more bytes follow; a chunk that authenticates only as final is released, then refused. */
  private openMiddle(cipher: ChunkCipher, sealed: Buffer): void {
    const plaintext = cipher.open(sealed, false);
    if (plaintext) return this.release(plaintext);
    const final = cipher.open(sealed, true);
    if (final) {
      this.release(final);
      throw badPayload('data follows the final chunk (trailing bytes or two final chunks)');
    }
    throw badPayload(`chunk ${cipher.chunks} does not authenticate (the file is damaged, truncated, reordered or not for this key)`);
  }

  /** The carried-over bytes must be one valid final chunk. */
  private openFinal(): void {
    const cipher = this.cipher!;
    const sealed = this.carry.subarray(0, this.carried);
    if (sealed.length < TAG_BYTES) {
      throw badPayload(sealed.length === 0 && cipher.chunks === 0 ? 'the payload has no chunks (truncated)' : 'the file ends inside a chunk (truncated)');
    }
    if (sealed.length === TAG_BYTES && cipher.chunks > 0 && cipher.open(sealed, true)) {
      // Only an empty payload may have an empty final chunk.
      throw badPayload('the final chunk is empty but the payload is not');
    }
    const final = cipher.open(sealed, true);
    if (final) {
      cipher.destroy();
      return this.release(final);
    }
    // Only a full chunk can be a middle one; a short chunk is never opened as one.
    const middle = sealed.length === SEALED_CHUNK_BYTES ? cipher.open(sealed, false) : undefined;
    if (middle) {
      this.release(middle);
      throw badPayload('the file ends without its final chunk (truncated at a chunk boundary)');
    }
    throw badPayload(`the final chunk (${cipher.chunks}) does not authenticate (the file is damaged or truncated)`);
  }

  /**
   * Passes on one opened chunk as it is: a 64 KiB buffer from the heap's free lists costs less
   * than gathering chunks into fresh 1 MiB buffers (measured), and the decompressors take any size.
   */
  private release(plaintext: Buffer): void {
    if (plaintext.length === 0) return;
    this.plaintextBytes += plaintext.length;
    this.push(plaintext);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.cipher?.destroy();
    this.carry.fill(0);
    callback(error);
  }
}

/**
 * The file key of a header: the first identity that opens a stanza wins. A passphrase (scrypt)
 * stanza must be the only one, so a passphrase file cannot carry a second, unauthenticated key.
 */
function unwrapFileKey(stanzas: readonly Stanza[], identities: readonly AgeIdentity[]): Buffer {
  if (stanzas.length > 1 && stanzas.some((s) => s.args[0] === SCRYPT_STANZA_TYPE)) {
    throw badHeader('a passphrase (scrypt) stanza must be the only stanza of its header');
  }
  for (const identity of identities) {
    const fileKey = identity.unwrap(stanzas);
    if (fileKey) return fileKey;
  }
  throw noMatchingIdentity();
}

/**
 * Checks, from the first bytes of a file, that one of the identities opens it: the header parses,
 * a stanza unwraps, the header MAC matches. Throws what the decryptor would (not age, malformed
 * header, no matching identity, bad MAC), so a restore can fail before it touches anything.
 * `head` must hold the whole header (at most MAX_HEADER_BYTES; fewer if the file is shorter).
 */
export function checkAgeHeader(head: Buffer, identities: readonly AgeIdentity[]): ParsedHeader {
  const header = parseHeader(head, true)!;
  const fileKey = unwrapFileKey(header.stanzas, identities);
  try {
    if (!verifyHeaderMac(header, fileKey)) throw badHeaderMac();
  } finally {
    fileKey.fill(0);
  }
  return header;
}

/** Decrypts a whole small age file (a manifest, say); throws what the stream would. */
export async function decryptBuffer(data: Buffer, identities: readonly AgeIdentity[]): Promise<Buffer> {
  const decryptor = new AgeDecryptor(identities);
  const parts: Buffer[] = [];
  decryptor.on('data', (part: Buffer) => void parts.push(part));
  await new Promise<void>((resolve, reject) => {
    decryptor.once('error', reject);
    decryptor.once('end', resolve);
    decryptor.end(data);
  });
  return Buffer.concat(parts);
}
