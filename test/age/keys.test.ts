import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeBech32, encodeBech32 } from '../../runner/archive/age/bech32.js';
import {
  X25519Identity,
  X25519Recipient,
  parseIdentitiesBytes,
  parseRecipient,
  parseRecipientsText,
  readIdentityFile,
  readRecipientsFile,
} from '../../runner/archive/age/index.js';
import { UsageError, exitCodeOf } from '../../runner/errors.js';
import { ageCli, ageKeygen, decryptInPieces } from '../helpers/age.js';
import { useTempDirs } from '../helpers/tree.js';

/**
 * Recipients and identities as users write them, and the one-line usage errors (exit 2) for
 * everything else. A secret key never appears in any message.
 */

const tempDir = useTempDirs();
const key = ageKeygen();
const secretLine = key.file.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;

function usageMessage(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect(exitCodeOf(error)).toBe(2);
    expect((error as Error).message).not.toContain('\n');
    return (error as Error).message;
  }
  throw new Error('expected a usage error');
}

/** A copy of the secret line with one data character changed (so its checksum fails). */
function corrupted(line: string): string {
  const i = 20;
  return line.slice(0, i) + (line[i] === 'Q' ? 'P' : 'Q') + line.slice(i + 1);
}

describe('bech32 as age uses it', () => {
  it('round-trips any length (age sets no 90-character limit), lower or upper case', () => {
    for (const length of [0, 1, 20, 32, 64, 200]) {
      const data = randomBytes(length);
      for (const hrp of ['age', 'AGE-SECRET-KEY-']) {
        const text = encodeBech32(hrp, data);
        expect(text === text.toLowerCase() || text === text.toUpperCase()).toBe(true);
        const decoded = decodeBech32(Buffer.from(text))!;
        expect(decoded.hrp).toBe(hrp);
        expect(Buffer.from(decoded.data).equals(data)).toBe(true);
      }
    }
  });

  it('every single-character substitution in a recipient is caught; mixed case is refused', () => {
    const charset = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
    for (let i = 4; i < key.recipient.length; i++) {
      const replacement = charset[(charset.indexOf(key.recipient[i]!) + 7) % 32]!;
      const changed = key.recipient.slice(0, i) + replacement + key.recipient.slice(i + 1);
      expect(decodeBech32(Buffer.from(changed))).toBeUndefined();
    }
    expect(decodeBech32(Buffer.from(key.recipient.toUpperCase()))?.hrp).toBe('AGE');
    expect(decodeBech32(Buffer.from(`A${key.recipient.slice(1)}`))).toBeUndefined();
  });
});

describe('recipients', () => {
  it('an age1 recipient from age-keygen parses and prints back the same', () => {
    expect(parseRecipient(key.recipient).toString()).toBe(key.recipient);
    expect(parseRecipient(`  ${key.recipient}\n`).toString()).toBe(key.recipient);
  });

  it('malformed or unsupported recipients get one line saying what to give instead', () => {
    expect(usageMessage(() => parseRecipient(key.recipient.slice(0, -1)))).toMatch(/^malformed age recipient "age1.*": expected an X25519 public key/);
    expect(usageMessage(() => parseRecipient(key.recipient.toUpperCase()))).toMatch(/^malformed age recipient: expected/);
    expect(usageMessage(() => parseRecipient('age1pq1qqqqqqqq'))).toMatch(/post-quantum recipients \(age1pq1…\) need age 1\.3/);
    expect(usageMessage(() => parseRecipient('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN'))).toMatch(/SSH keys are not supported/);
    expect(usageMessage(() => parseRecipient('age1yubikey1qwerty'))).toMatch(/plugin recipients are not supported/);
    expect(usageMessage(() => parseRecipient(''))).toMatch(/^malformed age recipient: /);
  });

  it('a secret key given as a recipient is refused without being echoed, whatever its case', () => {
    for (const secret of [secretLine, secretLine.toLowerCase(), corrupted(secretLine)]) {
      const message = usageMessage(() => parseRecipient(secret));
      expect(message).toMatch(/this is a secret key \(identity\), not a recipient; give its public key/);
      expect(message).not.toContain(secret.slice(16, 40));
    }
  });

  it('recipients files: comments, blank lines, surrounding whitespace and CRLF; errors name the line', async () => {
    const other = ageKeygen();
    const text = `# team keys\n\n${key.recipient}\r\n  # indented comment\n\t${other.recipient}  \n\n`;
    expect(parseRecipientsText(text, 'r.txt').map(String)).toEqual([key.recipient, other.recipient]);
    expect(usageMessage(() => parseRecipientsText(`# a\n${key.recipient}\nnot-a-key\n`, 'r.txt'))).toBe('recipients file r.txt, line 3: not an age X25519 recipient "age1…"');
    expect(usageMessage(() => parseRecipientsText('# only comments\n\n', 'r.txt'))).toBe('recipients file r.txt holds no recipient (one "age1…" per line)');
    const leaked = usageMessage(() => parseRecipientsText(`${key.recipient}\n${secretLine}\n`, 'r.txt'));
    expect(leaked).toMatch(/^recipients file r\.txt, line 2: this is a secret key/);
    expect(leaked).not.toContain(secretLine.slice(16));
    const dir = await tempDir('age-keys');
    expect(usageMessage(() => readRecipientsFile(path.join(dir, 'missing.txt')))).toMatch(/^cannot read the recipients file .*missing\.txt: no such file or directory/);
  });
});

describe('identities', () => {
  it('an age-keygen file (comments, public key line) gives the identity; several identities in one file', async () => {
    const dir = await tempDir('age-keys');
    const other = ageKeygen();
    const file = path.join(dir, 'keys.txt');
    fs.writeFileSync(file, `${key.file}\r\n\n${other.file.replace(/\n/g, '\r\n')}`);
    const identities = readIdentityFile(file) as X25519Identity[];
    expect(identities.map((i) => i.recipient.toString())).toEqual([key.recipient, other.recipient]);
    // And they decrypt what the age CLI encrypted to each.
    for (const [i, k] of [key, other].entries()) {
      const plaintext = randomBytes(1000);
      expect((await decryptInPieces(ageCli(['-e', '-r', k.recipient], plaintext), [identities[i]!])).plaintext.equals(plaintext)).toBe(true);
    }
  });

  it('malformed identity lines are named by file and line, never shown', () => {
    const bad = corrupted(secretLine);
    for (const [text, expected] of [
      [`# created\n${bad}\n`, /^identity file k\.txt, line 2: not a valid age identity "AGE-SECRET-KEY-1…" \(the line is not shown/],
      [`${secretLine.toLowerCase()}\n`, /^identity file k\.txt, line 1: not a valid age identity/],
      [`${secretLine.slice(0, 40)}\n`, /^identity file k\.txt, line 1: not a valid age identity/],
      [`${key.recipient}\n`, /line 1: this is a public key \(recipient\); the identity file needs the secret key/],
      ['AGE-SECRET-KEY-PQ-1XXXX\n', /line 1: post-quantum identities need age 1\.3/],
      ['AGE-PLUGIN-YUBIKEY-1XXXX\n', /line 1: plugin identities are not supported/],
      ['# nothing here\n\n', /^identity file k\.txt holds no identity/],
      ['', /^identity file k\.txt holds no identity/],
      ['-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n', /PEM\/SSH private key, which is not supported/],
    ] as const) {
      const message = usageMessage(() => parseIdentitiesBytes(Buffer.from(text), 'k.txt'));
      expect(message).toMatch(expected);
      expect(message).not.toContain(bad.slice(16, 40));
      expect(message).not.toContain(secretLine.slice(16, 40));
      expect(message.toLowerCase()).not.toContain(secretLine.toLowerCase().slice(16, 40));
    }
  });

  it('an age-encrypted (passphrase-protected) identity file is recognised and refused with what to do', async () => {
    const encrypted = ageCli(['-e', '-r', ageKeygen().recipient], Buffer.from(key.file));
    expect(usageMessage(() => parseIdentitiesBytes(encrypted, 'k.age'))).toMatch(/^identity file k\.age is itself age-encrypted .*decrypt it first \(age -d\)/);
  });

  it('missing, unreadable and oversized identity files are usage errors naming the file', async () => {
    const dir = await tempDir('age-keys');
    expect(usageMessage(() => readIdentityFile(path.join(dir, 'none.txt')))).toMatch(/^cannot read the identity file .*none\.txt: no such file or directory/);
    const big = path.join(dir, 'big.txt');
    fs.writeFileSync(big, Buffer.alloc(1024 * 1024 + 1, '#'));
    expect(usageMessage(() => readIdentityFile(big))).toMatch(/is larger than 1 MiB/);
    expect(usageMessage(() => readIdentityFile(dir))).toMatch(/^cannot read the identity file /);
  });

  it('the bytes read from an identity file are wiped; a destroyed identity cannot be used again', () => {
    const bytes = Buffer.from(key.file);
    const [identity] = parseIdentitiesBytes(bytes, 'k.txt');
    expect(bytes.every((b) => b === 0)).toBe(true);
    expect(identity!.encode()).toBe(secretLine);
    identity!.destroy();
    expect(() => identity!.encode()).toThrow(/destroyed/);
    expect(() => identity!.unwrap([])).toThrow(/destroyed/);
  });

  it('X25519Identity.generate gives distinct keys whose recipients round-trip through text', () => {
    const a = X25519Identity.generate();
    const b = X25519Identity.generate();
    expect(a.encode()).not.toBe(b.encode());
    expect(X25519Recipient.parse(a.recipient.toString()).publicKey.equals(a.recipient.publicKey)).toBe(true);
    expect(X25519Identity.parse(Buffer.from(a.encode()))!.recipient.toString()).toBe(a.recipient.toString());
  });
});
