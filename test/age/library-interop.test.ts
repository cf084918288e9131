import { randomBytes, randomInt } from 'node:crypto';
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { describe, expect, it } from 'vitest';
import { ScryptIdentity, ScryptRecipient, X25519Identity, X25519Recipient, parseHeader } from '../../runner/archive/age/index.js';
import { decryptInPieces, encryptInPieces, expectRefused } from '../helpers/age.js';

/**
 * Byte-level interoperability with `age-encryption` (typage, the reference TypeScript library
 * by age's author), both ways, including its streaming encrypter and passphrase files.
 */

const KiB = 1024;
const chunk = 64 * KiB;
const randomSizes = [randomInt(1, 2 * 1024 * KiB)];
const SIZES = [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk, 1024 * KiB + 3, ...randomSizes];

async function libraryKey(): Promise<{ identity: string; recipient: string }> {
  const identity = await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

const ours = (identity: string) => X25519Identity.parse(Buffer.from(identity))!;

async function libraryDecrypt(file: Buffer, identity: string): Promise<Buffer> {
  const d = new Decrypter();
  d.addIdentity(identity);
  return Buffer.from(await d.decrypt(file));
}

describe('age-encryption (typage) interoperability', () => {
  it('keys: the library and we derive the same recipient from an identity, and print the same text', async () => {
    for (let i = 0; i < 5; i++) {
      const key = await libraryKey();
      const identity = ours(key.identity);
      expect(identity.recipient.toString()).toBe(key.recipient);
      expect(identity.encode()).toBe(key.identity);
      const generated = X25519Identity.generate();
      expect(await identityToRecipient(generated.encode())).toBe(generated.recipient.toString());
    }
  });

  for (const size of SIZES) {
    it(`${size} bytes: we encrypt, the library decrypts; the library encrypts, we decrypt`, async () => {
      const key = await libraryKey();
      const plaintext = randomBytes(size);
      const mine = encryptInPieces(plaintext, [X25519Recipient.parse(key.recipient)], [chunk, 7, 70_000]);
      expect((await libraryDecrypt(mine, key.identity)).equals(plaintext)).toBe(true);

      const e = new Encrypter();
      e.addRecipient(key.recipient);
      const theirs = Buffer.from(await e.encrypt(plaintext));
      const outcome = await decryptInPieces(theirs, [ours(key.identity)], [999, chunk + 16]);
      expect(outcome.ended).toBe(true);
      expect(outcome.plaintext.equals(plaintext)).toBe(true);
      expect(theirs.length - parseHeader(theirs)!.length).toBe(mine.length - parseHeader(mine)!.length);
    });
  }

  it("the library's streaming encrypter: we decrypt what its ReadableStream produced", async () => {
    const key = await libraryKey();
    const plaintext = randomBytes(3 * 1024 * KiB + 5);
    const e = new Encrypter();
    e.addRecipient(key.recipient);
    const source = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < plaintext.length; i += 100_000) controller.enqueue(plaintext.subarray(i, i + 100_000));
        controller.close();
      },
    });
    const parts: Uint8Array[] = [];
    for await (const part of await e.encrypt(source)) parts.push(part);
    const outcome = await decryptInPieces(Buffer.concat(parts), [ours(key.identity)]);
    expect(outcome.ended).toBe(true);
    expect(outcome.plaintext.equals(plaintext)).toBe(true);
  });

  it('several recipients: each identity alone decrypts, both ways', async () => {
    const keys = await Promise.all([libraryKey(), libraryKey(), libraryKey()]);
    const plaintext = randomBytes(2 * chunk + 1);
    const mine = encryptInPieces(plaintext, keys.map((k) => X25519Recipient.parse(k.recipient)));
    const e = new Encrypter();
    for (const k of keys) e.addRecipient(k.recipient);
    const theirs = Buffer.from(await e.encrypt(plaintext));
    for (const k of keys) {
      expect((await libraryDecrypt(mine, k.identity)).equals(plaintext)).toBe(true);
      expect((await decryptInPieces(theirs, [ours(k.identity)])).plaintext.equals(plaintext)).toBe(true);
    }
    expectRefused(await decryptInPieces(theirs, [X25519Identity.generate()]), 'AGE_NO_MATCH');
  });

  it('passphrases (scrypt): both ways, and a wrong passphrase matches nothing', async () => {
    const plaintext = randomBytes(chunk + 10);
    const e = new Encrypter();
    e.setPassphrase('correct horse battery staple');
    e.setScryptWorkFactor(12);
    const theirs = Buffer.from(await e.encrypt(plaintext));
    expect(parseHeader(theirs)!.stanzas[0]!.args).toEqual(['scrypt', expect.any(String), '12']);
    expect((await decryptInPieces(theirs, [new ScryptIdentity('correct horse battery staple')])).plaintext.equals(plaintext)).toBe(true);
    expectRefused(await decryptInPieces(theirs, [new ScryptIdentity('wrong')]), 'AGE_NO_MATCH');

    const mine = encryptInPieces(plaintext, [new ScryptRecipient('correct horse battery staple', 12)]);
    const d = new Decrypter();
    d.addPassphrase('correct horse battery staple');
    expect(Buffer.from(await d.decrypt(mine)).equals(plaintext)).toBe(true);
  });
});
