/**
 * The base64 of age headers: the standard alphabet without `=` padding, and canonical only
 * (the unused low bits of the last character must be zero), as the age format requires.
 * Node's own decoder is lenient (it skips junk and accepts padding), so decoding checks first.
 */

const ALPHABET = /^[A-Za-z0-9+/]*$/;

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '');
}

/** The bytes, or undefined when the text is not canonical unpadded base64. */
export function decodeBase64(text: string): Buffer | undefined {
  if (!ALPHABET.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return encodeBase64(bytes) === text ? bytes : undefined;
}
