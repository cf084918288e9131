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

