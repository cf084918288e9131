import { IntegrityError, UsageError } from '../../errors.js';

/**
 * The one-line errors of the age engine. Damaged or foreign ciphertext is an integrity failure
 * (exit 3); a malformed key or recipient given by the user is a usage error (exit 2). No message
 * ever includes key material.
 */

export const NO_MATCH_MESSAGE = "no identity matches this archive's recipients";

export function noMatchingIdentity(): IntegrityError {
  return new IntegrityError(NO_MATCH_MESSAGE, 'AGE_NO_MATCH');
}

export function notAgeFile(detail: string): IntegrityError {
  return new IntegrityError(`not an age encrypted file: ${detail}`, 'AGE_NOT_AGE');
}

export function badHeader(detail: string): IntegrityError {
  return new IntegrityError(`age header is malformed: ${detail}`, 'AGE_HEADER');
}

export function badHeaderMac(): IntegrityError {
  return new IntegrityError('age header MAC does not match: the header was modified or damaged', 'AGE_MAC');
}

export function badPayload(detail: string): IntegrityError {
  return new IntegrityError(`age payload is corrupt: ${detail}`, 'AGE_PAYLOAD');
}

export function armoredFile(): UsageError {
  return new UsageError(
    'this file is ASCII-armored age ("-----BEGIN AGE ENCRYPTED FILE-----", made by age -a), which pvc-backup does not read; ' +
      'decrypt it with age -d, or encrypt without -a',
    'AGE_ARMOR',
  );
}

export function badKey(message: string): UsageError {
  return new UsageError(message, 'AGE_KEY');
}
