import { badHeader, noMatchingIdentity } from './errors.js';
import type { Stanza } from './header.js';

/** The file key of an age file: 16 random bytes, new for every file. */
export const FILE_KEY_BYTES = 16;

/** Wraps a file key into the stanza(s) of one recipient. */
export interface AgeRecipient {
  wrap(fileKey: Buffer): Stanza[];
}

/**
 * Unwraps the file key from the stanzas addressed to it. Returns undefined when no stanza is
 * addressed to this identity (or it cannot open any); throws an IntegrityError when a stanza
 * of its type is malformed.
 */
export interface AgeIdentity {
  unwrap(stanzas: readonly Stanza[]): Buffer | undefined;
  /** Overwrites the secret bytes held in JavaScript memory; the identity is unusable afterwards. */
  destroy(): void;
}

/**
 * The file key of a header: the first identity that opens a stanza wins. A passphrase (scrypt)
 * stanza must be the only one, so a passphrase file cannot carry a second, unauthenticated key.
 */
export function unwrapFileKey(stanzas: readonly Stanza[], identities: readonly AgeIdentity[]): Buffer {
  if (stanzas.length > 1 && stanzas.some((s) => s.args[0] === 'scrypt')) {
    throw badHeader('a passphrase (scrypt) stanza must be the only stanza of its header');
  }
  for (const identity of identities) {
    const fileKey = identity.unwrap(stanzas);
    if (fileKey) return fileKey;
  }
  throw noMatchingIdentity();
}
