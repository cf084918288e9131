import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import * as vectors from 'cctv-age';
import { describe, expect, it } from 'vitest';
import { encodeHeader, parseHeader } from '../../runner/archive/age/header.js';
import { type AgeIdentity, ScryptIdentity, X25519Identity, parseIdentitiesBytes } from '../../runner/archive/age/index.js';
import { PAYLOAD_NONCE_BYTES, StreamSealer, payloadKey } from '../../runner/archive/age/stream.js';
import { UsageError } from '../../runner/errors.js';
import { decryptInPieces } from '../helpers/age.js';

/**
 * The age test vectors of the C2SP CCTV project (npm `cctv-age`): every vector is decrypted
 * with our engine and must end the way it says — success with the exact payload, no match,
 * header or MAC failure, or a payload failure after releasing exactly the plaintext that
 * authenticated. Armored and post-quantum vectors must be refused with the line that says they
 * are not supported. In the other direction, known answers: with the vector's file key, our
 * header encoder and STREAM sealer reproduce the vector's bytes exactly.
 */

interface Vector {
  name: string;
  expect: string;
  payload?: string;
  fileKey?: Buffer;
  identities: string[];
  passphrases: string[];
  armored: boolean;
  compressed: boolean;
  file: Buffer;
}

function parseVector(name: string, bytes: Uint8Array): Vector {
  const all = Buffer.from(bytes);
  const split = all.indexOf('\n\n');
  const vector: Vector = { name, expect: '', identities: [], passphrases: [], armored: false, compressed: false, file: all.subarray(split + 2) };
  for (const line of all.subarray(0, split).toString('utf8').split('\n')) {
    const [key, value = ''] = [line.slice(0, line.indexOf(': ')), line.slice(line.indexOf(': ') + 2)];
    if (key === 'expect') vector.expect = value;
    else if (key === 'payload') vector.payload = value;
    else if (key === 'file key') vector.fileKey = Buffer.from(value, 'hex');
    else if (key === 'identity') vector.identities.push(value);
    else if (key === 'passphrase') vector.passphrases.push(value);
    else if (key === 'armored') vector.armored = value === 'yes';
    else if (key === 'compressed') vector.compressed = value === 'zlib';
  }
  if (vector.compressed) vector.file = zlib.inflateSync(vector.file);
  return vector;
}

const all = Object.entries(vectors as unknown as Record<string, Uint8Array>).map(([name, bytes]) => parseVector(name, bytes));
const postQuantum = (v: Vector) => v.identities.some((i) => i.startsWith('AGE-SECRET-KEY-PQ-'));
const plain = all.filter((v) => !v.armored && !postQuantum(v));

function identitiesOf(v: Vector): AgeIdentity[] {
  return [...v.identities.map((i) => X25519Identity.parse(Buffer.from(i))!), ...v.passphrases.map((p) => new ScryptIdentity(p))];
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const EXPECTED_CODE: Record<string, RegExp> = {
  'no match': /^AGE_NO_MATCH$/,
  'HMAC failure': /^AGE_MAC$/,
  'header failure': /^AGE_(HEADER|NOT_AGE)$/,
  'payload failure': /^AGE_PAYLOAD$/,
};

describe('C2SP CCTV age test vectors', () => {
  it('are all there (the package holds binary, armored and post-quantum vectors)', () => {
    expect(all.length).toBeGreaterThan(140);
    expect(plain.length).toBeGreaterThan(90);
    expect(new Set(plain.map((v) => v.expect))).toEqual(new Set(['success', 'no match', 'HMAC failure', 'header failure', 'payload failure']));
  });

  for (const v of plain) {
    it(`${v.name}: ${v.expect}`, async () => {
      // Odd piece sizes put the header, the nonce and every chunk boundary across two writes.
      for (const pieces of [[v.file.length || 1], [1, 7, 4093, 65_551, 33]]) {
        const outcome = await decryptInPieces(v.file, identitiesOf(v), pieces);
        if (v.expect === 'success') {
          expect(outcome.error?.message).toBeUndefined();
          expect(outcome.ended).toBe(true);
        } else {
          expect(outcome.ended).toBe(false);
          expect(outcome.error?.code, outcome.error?.message).toMatch(EXPECTED_CODE[v.expect]!);
          expect(outcome.error?.exitCode).toBe(3);
        }
        // What was released (all of it, or what authenticated before the failure) is exact.
        if (v.payload) expect(sha256(outcome.plaintext)).toBe(v.payload);
        else expect(outcome.plaintext.length).toBe(0);
      }
    });
  }

  it('known answers: our header encoder rewrites every parsable header byte for byte, MAC included', () => {
    const parsable = plain.filter((v) => v.expect !== 'header failure' && v.fileKey);
    expect(parsable.length).toBeGreaterThan(30);
    for (const v of parsable) {
      const header = parseHeader(v.file)!;
      const encoded = encodeHeader(header.stanzas, v.fileKey!);
      if (v.expect === 'HMAC failure') expect(encoded.subarray(0, header.macInput.length).equals(header.macInput), v.name).toBe(true);
      else expect(encoded.toString('latin1'), v.name).toBe(v.file.subarray(0, header.length).toString('latin1'));
    }
  });

  it('known answers: our STREAM sealer reproduces every successful payload byte for byte', async () => {
    const successes = plain.filter((v) => v.expect === 'success' && v.fileKey);
    expect(successes.length).toBeGreaterThan(10);
    for (const v of successes) {
      const header = parseHeader(v.file)!;
      const nonce = v.file.subarray(header.length, header.length + PAYLOAD_NONCE_BYTES);
      const { plaintext } = await decryptInPieces(v.file, identitiesOf(v));
      for (const piece of [65_536, 1000, 65_537]) {
        const sealed: Buffer[] = [];
        const sealer = new StreamSealer(payloadKey(v.fileKey!, nonce), (b) => void sealed.push(b));
        for (let i = 0; i < plaintext.length; i += piece) sealer.append(plaintext.subarray(i, i + piece));
        sealer.end();
        expect(Buffer.concat(sealed).equals(v.file.subarray(header.length + PAYLOAD_NONCE_BYTES)), `${v.name} in pieces of ${piece}`).toBe(true);
      }
    }
  });

  it('known answer from the age specification: identity AGE-SECRET-KEY-1GFPYY… has recipient age1zvkyg2…', () => {
    const identity = X25519Identity.parse(Buffer.from('AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX'))!;
    expect(identity.recipient.toString()).toBe('age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj');
    expect(identity.encode()).toBe('AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX');
  });

  it('armored vectors are refused with the line that says armor is not supported', async () => {
    const armored = all.filter((v) => v.armored && v.file.subarray(0, 34).toString() === '-----BEGIN AGE ENCRYPTED FILE-----');
    expect(armored.length).toBeGreaterThan(10);
    for (const v of armored) {
      const outcome = await decryptInPieces(v.file, identitiesOf(v));
      expect(outcome.error?.code, v.name).toBe('AGE_ARMOR');
      expect(outcome.error?.exitCode).toBe(2);
      expect(outcome.error?.message).toMatch(/ASCII-armored age .* does not read; decrypt it with age -d/);
    }
  });

  it('post-quantum identities are refused with the line that says they need age 1.3', () => {
    const v = all.find((x) => x.name === 'hybrid')!;
    expect(() => parseIdentitiesBytes(Buffer.from(`${v.identities[0]}\n`), 'key.txt')).toThrow(UsageError);
    expect(() => parseIdentitiesBytes(Buffer.from(`${v.identities[0]}\n`), 'key.txt')).toThrow(/key\.txt, line 1: post-quantum identities need age 1\.3/);
  });
});
