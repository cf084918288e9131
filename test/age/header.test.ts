import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeBase64, encodeBase64 } from '../../runner/archive/age/base64.js';
import { encodeHeader, looksLikeAge, looksLikeArmoredAge, parseHeader, verifyHeaderMac } from '../../runner/archive/age/header.js';
import { MAX_HEADER_BYTES, ScryptRecipient, X25519Identity, checkAgeHeader, decryptBuffer, encryptBuffer } from '../../runner/archive/age/index.js';
import { UsageError } from '../../runner/errors.js';

/** The encoding rules of the age header, checked on the exact text we write. */

describe('age header encoding', () => {
  it('base64 is unpadded and canonical; anything else is refused', () => {
    expect(encodeBase64(Buffer.from('A'))).toBe('QQ');
    expect(decodeBase64('QQ')!.toString()).toBe('A');
    expect(decodeBase64('')!.length).toBe(0);
    for (const bad of ['QQ==', 'QR', 'Q', 'QQ\n', ' QQ', 'Q-Q_', 'QUI=']) expect(decodeBase64(bad), bad).toBeUndefined();
  });

  it('stanza bodies wrap at 64 columns and always end with a shorter line, empty when needed', () => {
    const fileKey = randomBytes(16);
    for (const length of [0, 1, 32, 47, 48, 49, 95, 96, 97, 200]) {
      const body = randomBytes(length);
      const text = encodeHeader([{ args: ['test', 'a=b', '+/'], body }], fileKey).toString('latin1');
      const lines = text.split('\n');
      expect(lines[0]).toBe('age-encryption.org/v1');
      expect(lines[1]).toBe('-> test a=b +/');
      const bodyLines = lines.slice(2, lines.findIndex((l) => l.startsWith('---')));
      expect(bodyLines.slice(0, -1).every((l) => l.length === 64)).toBe(true);
      expect(bodyLines.at(-1)!.length).toBeLessThan(64);
      expect(bodyLines.join('')).toBe(encodeBase64(body));
      if (length % 48 === 0) expect(bodyLines.at(-1)).toBe('');
      expect(text).toMatch(/\n--- [A-Za-z0-9+/]{43}\n$/);
      const parsed = parseHeader(Buffer.from(text, 'latin1'))!;
      expect(parsed.stanzas).toEqual([{ args: ['test', 'a=b', '+/'], body }]);
      expect(parsed.length).toBe(text.length);
      expect(verifyHeaderMac(parsed, fileKey)).toBe(true);
      expect(verifyHeaderMac(parsed, randomBytes(16))).toBe(false);
    }
  });

  it('the header parser waits for more bytes until the MAC line is complete', () => {
    const text = encodeHeader([{ args: ['X'], body: randomBytes(70) }], randomBytes(16));
    for (let cut = 1; cut < text.length; cut++) expect(parseHeader(text.subarray(0, cut)), `cut at ${cut}`).toBeUndefined();
    expect(parseHeader(text)!.length).toBe(text.length);
  });

  it('recognises age and armored age from their first bytes', () => {
    expect(looksLikeAge(Buffer.from('age-encryption.org/v1\n'))).toBe(true);
    expect(looksLikeAge(Buffer.from('age-enc'))).toBe(true);
    expect(looksLikeAge(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe(false);
    expect(looksLikeArmoredAge(Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----\n'))).toBe(true);
    expect(looksLikeArmoredAge(Buffer.from('age-encryption.org/v1\n'))).toBe(false);
  });

  it('small buffers (a manifest) round-trip through encryptBuffer / decryptBuffer', async () => {
    const identity = X25519Identity.generate();
    const manifest = Buffer.from(JSON.stringify({ files: [{ path: './a', size: 1 }] }));
    const sealed = encryptBuffer(manifest, [identity.recipient]);
    expect((await decryptBuffer(sealed, [identity])).equals(manifest)).toBe(true);
    await expect(decryptBuffer(sealed, [X25519Identity.generate()])).rejects.toThrow("no identity matches this archive's recipients");
    await expect(decryptBuffer(sealed.subarray(0, sealed.length - 1), [identity])).rejects.toMatchObject({ code: 'AGE_PAYLOAD', exitCode: 3 });
  });

  it('checkAgeHeader tells from the first bytes whether an identity opens the file, before any payload is read', () => {
    const identity = X25519Identity.generate();
    const file = encryptBuffer(randomBytes(300_000), [X25519Identity.generate().recipient, identity.recipient]);
    const head = file.subarray(0, MAX_HEADER_BYTES);
    expect(checkAgeHeader(head, [identity]).stanzas).toHaveLength(2);
    expect(() => checkAgeHeader(head, [X25519Identity.generate()])).toThrow("no identity matches this archive's recipients");
    const tampered = Buffer.from(head);
    tampered[30]! ^= 1;
    expect(() => checkAgeHeader(tampered, [identity])).toThrow(/^age header|no identity matches/);
    expect(() => checkAgeHeader(Buffer.from('PK\x03\x04'), [identity])).toThrow(/^not an age encrypted file/);
    expect(() => checkAgeHeader(file.subarray(0, 40), [identity])).toThrow(/truncated/);
  });

  it('no recipients at all is a usage error, not a file nobody can open', () => {
    expect(() => encryptBuffer(Buffer.from('x'), [])).toThrow(UsageError);
  });

  it('a passphrase cannot be mixed with other recipients (age refuses such files)', () => {
    expect(() => encryptBuffer(Buffer.from('x'), [new ScryptRecipient('pw', 10), X25519Identity.generate().recipient])).toThrow(UsageError);
  });
});
