import { randomBytes } from 'node:crypto';
import type { Sink } from '../compress.js';
import { encodeHeader } from './header.js';
import { type AgeRecipient, FILE_KEY_BYTES } from './identity.js';
import { ChunkCipher, PAYLOAD_NONCE_BYTES, PLAIN_CHUNK_BYTES, SEALED_CHUNK_BYTES, payloadKey } from './stream.js';

/**
 * Encrypts a byte stream to age recipients as it is produced: a sink (`append`, then `end`) in
 * front of another sink. The header and payload nonce go out at once; each `append` passes on
 * every 64 KiB chunk it completes, sealed, in one buffer. The last chunk is held back until
 * `end`, because only then is it known to be the final one. Memory: one 64 KiB carry buffer.
 */
export class AgeEncryptor {
  private readonly cipher: ChunkCipher;
  private readonly carry = Buffer.allocUnsafe(PLAIN_CHUNK_BYTES);
  private carried = 0;
  private ended = false;
  /** Plaintext bytes taken in so far. */
  plaintextBytes = 0;
  /** Encrypted bytes handed to the sink so far (header included). */
  encryptedBytes = 0;

  constructor(
    recipients: readonly AgeRecipient[],
    private readonly out: Sink,
  ) {
    if (recipients.length === 0) throw new Error('age encryption needs at least one recipient');
    const fileKey = randomBytes(FILE_KEY_BYTES);
    const nonce = randomBytes(PAYLOAD_NONCE_BYTES);
    try {
      const header = encodeHeader(
        recipients.flatMap((r) => r.wrap(fileKey)),
        fileKey,
      );
      this.cipher = new ChunkCipher(payloadKey(fileKey, nonce));
      this.emit(Buffer.concat([header, nonce]));
    } finally {
      fileKey.fill(0);
    }
  }

  /** Takes the next plaintext bytes; the chunk may be reused by the caller once this returns. */
  readonly append = (chunk: Buffer): void => {
    if (this.ended) throw new Error('age encryptor: append after end');
    if (chunk.length === 0) return;
    this.plaintextBytes += chunk.length;
    let position = 0;
    // Whole chunks are sealed only once a further byte exists, so the final one is held back.
    const room = this.carried + chunk.length - 1;
    const sealable = Math.floor(Math.max(0, room) / PLAIN_CHUNK_BYTES);
    if (sealable > 0) {
      const out = Buffer.allocUnsafe(sealable * SEALED_CHUNK_BYTES);
      let offset = 0;
      if (this.carried > 0) {
        position = PLAIN_CHUNK_BYTES - this.carried;
        chunk.copy(this.carry, this.carried, 0, position);
        offset += this.cipher.sealInto(this.carry, false, out, offset);
        this.carried = 0;
      }
      while (offset < out.length) {
        offset += this.cipher.sealInto(chunk.subarray(position, position + PLAIN_CHUNK_BYTES), false, out, offset);
        position += PLAIN_CHUNK_BYTES;
      }
      this.emit(out);
    }
    chunk.copy(this.carry, this.carried, position);
    this.carried += chunk.length - position;
  };

  /** Seals the final chunk (empty only if nothing was appended) and hands it to the sink. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const out = Buffer.allocUnsafe(this.carried + SEALED_CHUNK_BYTES - PLAIN_CHUNK_BYTES);
    this.cipher.sealInto(this.carry.subarray(0, this.carried), true, out, 0);
    this.carry.fill(0);
    this.cipher.destroy();
    this.emit(out);
  }

  private emit(bytes: Buffer): void {
    this.encryptedBytes += bytes.length;
    this.out(bytes);
  }
}

/** Encrypts a whole small buffer (a manifest, say) to the recipients. */
export function encryptBuffer(plaintext: Buffer, recipients: readonly AgeRecipient[]): Buffer {
  const parts: Buffer[] = [];
  const encryptor = new AgeEncryptor(recipients, (part) => void parts.push(part));
  encryptor.append(plaintext);
  encryptor.end();
  return Buffer.concat(parts);
}
