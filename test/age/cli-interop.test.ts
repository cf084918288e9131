import { createHash, randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  NO_MATCH_MESSAGE,
  X25519Identity,
  X25519Recipient,
  parseHeader,
  readIdentityFile,
  readRecipientsFile,
} from '../../runner/archive/age/index.js';
import { type CliKey, ageCli, ageKeygen, decryptInPieces, encryptInPieces, expectRefused, identityOf } from '../helpers/age.js';
import { tool } from '../helpers/cli.js';
import { useTempDirs } from '../helpers/tree.js';

/**
 * Byte-level interoperability with the real `age` CLI (Debian's age 1.1.1): files we encrypt
 * decrypt with `age -d`, and files `age -e` encrypts decrypt with our engine, at every size
 * around the 64 KiB chunk boundary, empty, multi-MiB and random, for several recipients.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const chunk = 64 * KiB;
// Random sizes are drawn per run and shown in the test names, so a failure can be replayed.
const randomSizes = [randomInt(1, 4 * MiB), randomInt(4 * MiB, 24 * MiB)];
const SIZES = [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * MiB + 17, ...randomSizes];
const PIECES = [[1 * MiB], [4093, 65_536, 1], [chunk]];

const tempDir = useTempDirs('file');
const keys: CliKey[] = [ageKeygen(), ageKeygen(), ageKeygen()];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function keyFile(key: CliKey): Promise<string> {
  const file = path.join(await tempDir('age-key'), 'key.txt');
  fs.writeFileSync(file, key.file, { mode: 0o600 });
  return file;
}

describe('age CLI interoperability', () => {
  it('the age CLI is the one the project pins (Debian age 1.1.x)', () => {
    expect(tool('age', ['--version']).toString().trim()).toMatch(/^(1\.1\.|v1\.1\.)/);
  });

  for (const [index, size] of SIZES.entries()) {
    it(`${size} bytes: we encrypt, age -d decrypts; age -e encrypts, we decrypt`, async () => {
      const dir = await tempDir('age-size');
      const plaintext = randomBytes(size);
      const identity = await keyFile(keys[0]!);

      const ours = encryptInPieces(plaintext, [X25519Recipient.parse(keys[0]!.recipient)], PIECES[index % PIECES.length]);
      fs.writeFileSync(path.join(dir, 'ours.age'), ours);
      expect(sha(ageCli(['-d', '-i', identity, path.join(dir, 'ours.age')]))).toBe(sha(plaintext));

      fs.writeFileSync(path.join(dir, 'plain'), plaintext);
      const theirs = ageCli(['-e', '-r', keys[0]!.recipient, path.join(dir, 'plain')]);
      const outcome = await decryptInPieces(theirs, [identityOf(keys[0]!)], PIECES[(index + 1) % PIECES.length]);
      expect(outcome.error?.message).toBeUndefined();
      expect(outcome.ended).toBe(true);
      expect(sha(outcome.plaintext)).toBe(sha(plaintext));
      // Same size both ways: header + nonce + 16 bytes per chunk (an empty payload has one chunk).
      expect(theirs.length - parseHeader(theirs)!.length).toBe(ours.length - parseHeader(ours)!.length);
    });
  }

  it('several recipients: each identity alone decrypts, both ways; another identity does not', async () => {
    const dir = await tempDir('age-multi');
    const plaintext = randomBytes(5 * chunk + 99);
    const files = await Promise.all(keys.map(keyFile));
    const ours = encryptInPieces(plaintext, keys.map((k) => X25519Recipient.parse(k.recipient)));
    expect(parseHeader(ours)!.stanzas.map((s) => s.args[0])).toEqual(['X25519', 'X25519', 'X25519']);
    fs.writeFileSync(path.join(dir, 'ours.age'), ours);
    fs.writeFileSync(path.join(dir, 'plain'), plaintext);
    const theirs = ageCli(['-e', ...keys.flatMap((k) => ['-r', k.recipient]), path.join(dir, 'plain')]);
    for (const [i, key] of keys.entries()) {
      expect(ageCli(['-d', '-i', files[i]!, path.join(dir, 'ours.age')]).equals(plaintext)).toBe(true);
      const outcome = await decryptInPieces(theirs, [identityOf(key)]);
      expect(outcome.ended).toBe(true);
      expect(outcome.plaintext.equals(plaintext)).toBe(true);
    }
    const stranger = ageKeygen();
    const refused = await decryptInPieces(ours, [identityOf(stranger)]);
    expectRefused(refused, 'AGE_NO_MATCH');
    expect(refused.error?.message).toBe(NO_MATCH_MESSAGE);
    expect(refused.plaintext.length).toBe(0);
    const strangerFile = await keyFile(stranger);
    expect(() => ageCli(['-d', '-i', strangerFile, path.join(dir, 'ours.age')])).toThrow(/no identity matched/);
  });

  it('an age-keygen identity file and an age -R recipients file (comments, blank lines) read as age reads them', async () => {
    const dir = await tempDir('age-files');
    const recipientsFile = path.join(dir, 'recipients.txt');
    fs.writeFileSync(recipientsFile, `# the backup keys\n\n${keys[0]!.recipient}\n\n# second\n${keys[1]!.recipient}\n`);
    const recipients = readRecipientsFile(recipientsFile);
    expect(recipients.map(String)).toEqual([keys[0]!.recipient, keys[1]!.recipient]);

    const plaintext = randomBytes(200 * KiB);
    const theirs = ageCli(['-e', '-R', recipientsFile], plaintext);
    const identities = readIdentityFile(await keyFile(keys[1]!));
    expect(identities).toHaveLength(1);
    expect((identities[0] as X25519Identity).recipient.toString()).toBe(keys[1]!.recipient);
    expect((await decryptInPieces(theirs, identities)).plaintext.equals(plaintext)).toBe(true);

    fs.writeFileSync(path.join(dir, 'ours.age'), encryptInPieces(plaintext, recipients));
    expect(ageCli(['-d', '-i', await keyFile(keys[0]!), path.join(dir, 'ours.age')]).equals(plaintext)).toBe(true);
  });

  it('an identity we generate is one age-keygen -y and age -d accept', async () => {
    const dir = await tempDir('age-ours');
    const identity = X25519Identity.generate();
    const file = path.join(dir, 'key.txt');
    fs.writeFileSync(file, `# public key: ${identity.recipient}\n${identity.encode()}\n`, { mode: 0o600 });
    expect(tool('age-keygen', ['-y', file]).toString().trim()).toBe(identity.recipient.toString());
    const plaintext = randomBytes(70 * KiB);
    const theirs = ageCli(['-e', '-r', identity.recipient.toString()], plaintext);
    expect((await decryptInPieces(theirs, [identity])).plaintext.equals(plaintext)).toBe(true);
    fs.writeFileSync(path.join(dir, 'ours.age'), encryptInPieces(plaintext, [identity.recipient]));
    expect(ageCli(['-d', '-i', file, path.join(dir, 'ours.age')]).equals(plaintext)).toBe(true);
  });

  it('age -d refuses a file of ours that is truncated, as we do (the same format rules)', async () => {
    const dir = await tempDir('age-trunc');
    const plaintext = randomBytes(3 * chunk);
    const ours = encryptInPieces(plaintext, [X25519Recipient.parse(keys[0]!.recipient)]);
    const file = path.join(dir, 'cut.age');
    fs.writeFileSync(file, ours.subarray(0, ours.length - 10));
    const identity = await keyFile(keys[0]!);
    expect(() => ageCli(['-d', '-i', identity, file])).toThrow(/failed to decrypt and authenticate payload chunk/);
    expectRefused(await decryptInPieces(ours.subarray(0, ours.length - 10), [identityOf(keys[0]!)]), 'AGE_PAYLOAD', plaintext);
  });
});
