import { randomBytes } from 'node:crypto';
import type { Sink } from '../compress.js';
import { badKey } from './errors.js';
import { encodeHeader } from './header.js';
import { type AgeIdentity, type AgeRecipient, FILE_KEY_BYTES } from './identity.js';
import { SCRYPT_STANZA_TYPE } from './scrypt.js';
import { PAYLOAD_NONCE_BYTES, type SealerOptions, StreamSealer, payloadKey } from './stream.js';

/**
 * Encrypts a byte stream to age recipients as it is produced: a sink (`append`, then `end`) in
 * front of another sink. The header and payload nonce go out at once, then the STREAM chunks
 * as they complete (see StreamSealer). Memory: one 64 KiB carry buffer (and, with
 * `sinkCopies`, one reused ~1 MiB output buffer).
 */
export class AgeEncryptor {
  private readonly sealer: StreamSealer;
  private readonly headerBytes: number;
  private retained: Buffer | undefined;

  constructor(recipients: readonly AgeRecipient[], out: Sink, options: SealerOptions & { retainFileKey?: boolean } = {}) {
    if (recipients.length === 0) throw badKey('age encryption needs at least one recipient (--age-recipient or --age-recipients-file)');
    const fileKey = randomBytes(FILE_KEY_BYTES);
    const nonce = randomBytes(PAYLOAD_NONCE_BYTES);
    try {
      const stanzas = recipients.flatMap((r) => r.wrap(fileKey));
      if (stanzas.length > 1 && stanzas.some((s) => s.args[0] === SCRYPT_STANZA_TYPE)) {
        throw badKey('a passphrase cannot be combined with other age recipients (age requires a passphrase to be the only one)');
      }
      const header = Buffer.concat([encodeHeader(stanzas, fileKey), nonce]);
      this.headerBytes = header.length;
      out(header);
      this.sealer = new StreamSealer(payloadKey(fileKey, nonce), out, options);
      if (options.retainFileKey) this.retained = Buffer.from(fileKey);
    } finally {
      fileKey.fill(0);
    }
  }

  /** Takes the next plaintext bytes; the caller may reuse the chunk once this returns. */
  readonly append = (chunk: Buffer): void => this.sealer.append(chunk);

  /** Seals the final chunk and hands it to the sink; nothing may be appended afterwards. */
  end(): void {
    this.sealer.end();
  }

  /**
   * The file's own key as an identity, so the writer can authenticate what reached its sink
   * (header MAC and every chunk) without any recipient's secret key. Only with `retainFileKey`,
   * once; destroy it when done.
   */
  takeFileKeyIdentity(): AgeIdentity {
    if (!this.retained) throw new Error('age encryption: the file key was not retained, or was taken already');
    const identity = new FileKeyIdentity(this.retained);
    this.retained = undefined;
    return identity;
  }

  /** Plaintext bytes taken in so far. */
  get plaintextBytes(): number {
    return this.sealer.plaintextBytes;
  }

  /** Encrypted bytes handed to the sink so far, header included. */
  get encryptedBytes(): number {
    return this.headerBytes + this.sealer.sealedBytes;
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

/** Answers every header with the file key it holds (the writer's self-check; see takeFileKeyIdentity). */
class FileKeyIdentity implements AgeIdentity {
  constructor(private fileKey: Buffer | undefined) {}

  unwrap(): Buffer | undefined {
    return this.fileKey ? Buffer.from(this.fileKey) : undefined;
  }

  destroy(): void {
    this.fileKey?.fill(0);
    this.fileKey = undefined;
  }
}
