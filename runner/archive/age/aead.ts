import { createCipheriv, createDecipheriv } from 'node:crypto';

/** ChaCha20-Poly1305 (RFC 7539) with a 16-byte tag, as every part of age uses it. */

export const TAG_BYTES = 16;
const ZERO_NONCE = Buffer.alloc(12);

/** Encrypts plaintext; returns ciphertext || tag. The nonce defaults to 12 zero bytes (key wrapping). */
export function seal(key: Buffer, plaintext: Buffer, nonce: Buffer = ZERO_NONCE): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  const head = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([head, cipher.getAuthTag()]);
}

/** Decrypts ciphertext || tag; undefined when it does not authenticate. */
export function open(key: Buffer, sealed: Buffer, nonce: Buffer = ZERO_NONCE): Buffer | undefined {
  if (sealed.length < TAG_BYTES) return undefined;
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const plaintext = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    plaintext.fill(0);
    return undefined;
  }
  return plaintext;
}
