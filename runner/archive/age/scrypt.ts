import { randomBytes, scryptSync } from 'node:crypto';
import { open, seal } from './aead.js';
import { decodeBase64, encodeBase64 } from './base64.js';
import { badHeader } from './errors.js';
import type { Stanza } from './header.js';
import { type AgeIdentity, type AgeRecipient, FILE_KEY_BYTES } from './identity.js';

/**
 * age's passphrase recipient type: `-> scrypt <16-byte salt> <log2 N>`, the file key sealed
 * under scrypt(passphrase, "age-encryption.org/v1/scrypt" || salt, N, r = 8, p = 1). Such a
 * stanza must be alone in its header (checked where the file key is unwrapped).
 */

export const SCRYPT_STANZA_TYPE = 'scrypt';
const SALT_LABEL = Buffer.from('age-encryption.org/v1/scrypt');
const SALT_BYTES = 16;
/** age's default: 2^18 (256 MiB of memory, about a second). */
export const DEFAULT_SCRYPT_LOG_N = 18;
/** The largest work factor accepted when decrypting: 2^20 needs 1 GiB of memory already. */
export const MAX_SCRYPT_LOG_N = 20;

function derive(passphrase: Buffer, salt: Buffer, logN: number): Buffer {
  const N = 2 ** logN;
  return scryptSync(passphrase, Buffer.concat([SALT_LABEL, salt]), 32, { N, r: 8, p: 1, maxmem: 128 * N * 8 + 16 * 1024 * 1024 });
}

export class ScryptRecipient implements AgeRecipient {
  private readonly passphrase: Buffer;

  constructor(
    passphrase: string | Buffer,
    private readonly logN = DEFAULT_SCRYPT_LOG_N,
  ) {
    this.passphrase = Buffer.from(passphrase);
  }

  wrap(fileKey: Buffer): Stanza[] {
    const salt = randomBytes(SALT_BYTES);
    const key = derive(this.passphrase, salt, this.logN);
    try {
      return [{ args: [SCRYPT_STANZA_TYPE, encodeBase64(salt), String(this.logN)], body: seal(key, fileKey) }];
    } finally {
      key.fill(0);
    }
  }

  destroy(): void {
    this.passphrase.fill(0);
  }
}

export class ScryptIdentity implements AgeIdentity {
  private readonly passphrase: Buffer;

  constructor(
    passphrase: string | Buffer,
    private readonly maxLogN = MAX_SCRYPT_LOG_N,
  ) {
    this.passphrase = Buffer.from(passphrase);
  }

  unwrap(stanzas: readonly Stanza[]): Buffer | undefined {
    for (const stanza of stanzas) {
      if (stanza.args[0] !== SCRYPT_STANZA_TYPE) continue;
      if (stanza.args.length !== 3) throw badHeader('an scrypt stanza must have exactly two arguments');
      const salt = decodeBase64(stanza.args[1]!);
      if (!salt || salt.length !== SALT_BYTES) throw badHeader('an scrypt stanza salt is not 16 bytes of canonical base64');
      const factor = stanza.args[2]!;
      if (!/^[1-9][0-9]*$/.test(factor)) throw badHeader('an scrypt stanza work factor is not a plain decimal number');
      const logN = Number(factor);
      if (logN > this.maxLogN) throw badHeader(`an scrypt stanza asks for work factor 2^${factor}, above the limit 2^${this.maxLogN}`);
      if (stanza.body.length !== FILE_KEY_BYTES + 16) throw badHeader('an scrypt stanza body is not a 16-byte file key and its tag');
      const key = derive(this.passphrase, salt, logN);
      const fileKey = open(key, stanza.body);
      key.fill(0);
      if (fileKey) return fileKey;
    }
    return undefined;
  }

  destroy(): void {
    this.passphrase.fill(0);
  }
}
