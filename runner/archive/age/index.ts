/**
 * age v1 encryption (https://age-encryption.org/v1) for archives and their manifests: X25519
 * and passphrase recipients, the text header, and the STREAM payload on node:crypto's
 * ChaCha20-Poly1305. Files made here decrypt with `age -d`, and files `age -e` makes decrypt here.
 */
export { AgeDecryptor, checkAgeHeader, decryptBuffer } from './decrypt.js';
export { AgeEncryptor, encryptBuffer } from './encrypt.js';
export { NO_MATCH_MESSAGE } from './errors.js';
export { MAX_HEADER_BYTES, type ParsedHeader, type Stanza, looksLikeAge, looksLikeArmoredAge, parseHeader } from './header.js';
export type { AgeIdentity, AgeRecipient } from './identity.js';
export { parseIdentitiesBytes, parseRecipient, parseRecipientsText, readIdentityFile, readRecipientsFile } from './key-files.js';
export { ScryptIdentity, ScryptRecipient } from './scrypt.js';
export { PLAIN_CHUNK_BYTES, SEALED_CHUNK_BYTES, type SealerOptions } from './stream.js';
export { X25519Identity, X25519Recipient } from './x25519.js';

/** The file name suffix of an encrypted file. */
export const AGE_EXTENSION = '.age';
