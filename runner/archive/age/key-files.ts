import fs from 'node:fs';
import { RunnerError, describeSystemError } from '../../errors.js';
import { badKey } from './errors.js';
import type { AgeIdentity } from './identity.js';
import { X25519Identity, X25519Recipient } from './x25519.js';

/**
 * Recipients and identities as users write them: `--age-recipient age1…`, recipients files in
 * `age -R` format and identity files in `age -i` format (one key per line, blank lines and
 * `#` comments ignored, as age-keygen writes them). Only X25519 keys are supported; every other
 * kind age knows gets a line saying so. Identity errors name the file and line, never the key.
 */

const MAX_KEY_FILE_BYTES = 1024 * 1024;

/** Why a recipient string is not one we take, worded for the kinds users are likely to try. */
function recipientProblem(text: string): string | undefined {
  if (text.toUpperCase().startsWith('AGE-SECRET-KEY-')) return 'this is a secret key (identity), not a recipient; give its public key "age1…" (age-keygen -y KEYFILE prints it)';
  if (text.startsWith('age1pq1')) return 'post-quantum recipients (age1pq1…) need age 1.3 or later and are not supported; use an X25519 recipient from age-keygen';
  if (text.startsWith('age1tag')) return 'tagged (hardware) recipients are not supported; use an X25519 recipient from age-keygen';
  if (text.startsWith('ssh-') || text.startsWith('ecdsa-') || text.startsWith('sk-')) return 'SSH keys are not supported as recipients; use an X25519 recipient from age-keygen';
  if (/^age1[a-z0-9]+1/.test(text)) return 'plugin recipients are not supported; use an X25519 recipient from age-keygen';
  return undefined;
}

/** One `age1…` recipient (a flag value); a usage error naming the problem otherwise. */
export function parseRecipient(text: string): X25519Recipient {
  const value = text.trim();
  const problem = recipientProblem(value);
  if (problem) throw badKey(`age recipient: ${problem}`);
  return X25519Recipient.parse(value);
}

/** The recipients of an `age -R` file's text; `source` names it in messages. */
export function parseRecipientsText(text: string, source: string): X25519Recipient[] {
  const recipients: X25519Recipient[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `recipients file ${source}, line ${index + 1}`;
    const problem = recipientProblem(line);
    if (problem) throw badKey(`${where}: ${problem}`);
    try {
      recipients.push(X25519Recipient.parse(line));
    } catch {
      throw badKey(`${where}: not an age X25519 recipient "age1…"`);
    }
  });
  if (recipients.length === 0) throw badKey(`recipients file ${source} holds no recipient (one "age1…" per line)`);
  return recipients;
}

function readKeyFile(file: string, what: string): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    throw badKey(`cannot read the ${what} ${file}: ${describeSystemError(error)}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size > MAX_KEY_FILE_BYTES) throw badKey(`the ${what} ${file} is larger than 1 MiB; is it the right file?`);
    return fs.readFileSync(fd);
  } catch (error) {
    if (error instanceof RunnerError) throw error;
    throw badKey(`cannot read the ${what} ${file}: ${describeSystemError(error)}`);
  } finally {
    fs.closeSync(fd);
  }
}

export function readRecipientsFile(file: string): X25519Recipient[] {
  return parseRecipientsText(readKeyFile(file, 'recipients file').toString('utf8'), file);
}

const startsWith = (line: Buffer, text: string) => line.subarray(0, text.length).toString('latin1') === text;

/**
 * The identities in an `age -i` file's bytes. The bytes are wiped before this returns, and the
 * secret lines never become strings.
 */
export function parseIdentitiesBytes(bytes: Buffer, source: string): X25519Identity[] {
  const identities: X25519Identity[] = [];
  try {
    if (startsWith(bytes, 'age-encryption.org/') || startsWith(bytes, '-----BEGIN AGE ENCRYPTED FILE')) {
      throw badKey(`identity file ${source} is itself age-encrypted (passphrase-protected); decrypt it first (age -d) and give the plain key file`);
    }
    if (startsWith(bytes, '-----BEGIN')) {
      throw badKey(`identity file ${source} holds a PEM/SSH private key, which is not supported; use an age X25519 identity from age-keygen`);
    }
    let start = 0;
    let number = 0;
    while (start <= bytes.length) {
      let end = bytes.indexOf(0x0a, start);
      if (end < 0) end = bytes.length;
      number++;
      let lineStart = start;
      let lineEnd = end;
      while (lineStart < lineEnd && isSpace(bytes[lineStart]!)) lineStart++;
      while (lineEnd > lineStart && isSpace(bytes[lineEnd - 1]!)) lineEnd--;
      const line = bytes.subarray(lineStart, lineEnd);
      start = end + 1;
      if (line.length === 0 || line[0] === 0x23 /* # */) continue;
      const where = `identity file ${source}, line ${number}`;
      if (startsWith(line, 'AGE-SECRET-KEY-PQ-')) throw badKey(`${where}: post-quantum identities need age 1.3 or later and are not supported; use an X25519 identity from age-keygen`);
      if (startsWith(line, 'AGE-PLUGIN-')) throw badKey(`${where}: plugin identities are not supported; use an X25519 identity from age-keygen`);
      if (startsWith(line, 'age1')) throw badKey(`${where}: this is a public key (recipient); the identity file needs the secret key "AGE-SECRET-KEY-1…"`);
      const identity = X25519Identity.parse(line);
      if (!identity) throw badKey(`${where}: not a valid age identity "AGE-SECRET-KEY-1…" (the line is not shown; check for a typo or a truncated copy)`);
      identities.push(identity);
    }
    if (identities.length === 0) throw badKey(`identity file ${source} holds no identity ("AGE-SECRET-KEY-1…", as age-keygen writes it)`);
    return identities;
  } catch (error) {
    for (const identity of identities) identity.destroy();
    throw error;
  } finally {
    bytes.fill(0);
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d;
}

/** Reads an identity file (`age -i` format); the file's bytes are wiped from memory afterwards. */
export function readIdentityFile(file: string): AgeIdentity[] {
  return parseIdentitiesBytes(readKeyFile(file, 'identity file'), file);
}
