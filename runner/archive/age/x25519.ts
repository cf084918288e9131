import { type KeyObject, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync } from 'node:crypto';
import { open, seal } from './aead.js';
import { decodeBase64, encodeBase64 } from './base64.js';
import { decodeBech32, encodeBech32 } from './bech32.js';
import { badHeader, badKey } from './errors.js';
import type { Stanza } from './header.js';
import { type AgeIdentity, type AgeRecipient, FILE_KEY_BYTES } from './identity.js';

/**
 * age's X25519 recipient type: `age1…` public keys, `AGE-SECRET-KEY-1…` identities, and the
 * `-> X25519 <ephemeral share>` stanza whose body is the file key sealed under
 * HKDF-SHA-256(shared secret, salt = share || recipient, info = "age-encryption.org/v1/X25519").
 * The curve arithmetic is node:crypto's (OpenSSL); raw 32-byte keys enter it through the fixed
 * DER prefixes of X25519 SPKI and PKCS #8 structures.
 */

const RECIPIENT_HRP = 'age';
const IDENTITY_HRP = 'AGE-SECRET-KEY-';
const STANZA_TYPE = 'X25519';
const WRAP_INFO = 'age-encryption.org/v1/X25519';
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const KEY_BYTES = 32;

function publicKeyObject(point: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, point]), format: 'der', type: 'spki' });
}

function rawPublicKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
}

function wrapKey(sharedSecret: Buffer, share: Buffer, recipient: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.concat([share, recipient]), WRAP_INFO, 32));
}

/** A shared secret, or an error for the low-order points that give the all-zero value. */
function sharedSecret(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey, publicKey });
  } catch {
    throw badHeader('an X25519 stanza holds a low-order share (the shared secret would be zero)');
  }
  if (secret.every((b) => b === 0)) throw badHeader('an X25519 stanza holds a low-order share (the shared secret would be zero)');
  return secret;
}

export class X25519Recipient implements AgeRecipient {
  private constructor(
    /** The 32-byte Montgomery u-coordinate. */
    readonly publicKey: Buffer,
    private readonly keyObject: KeyObject,
  ) {}

  static fromPublicKey(point: Buffer): X25519Recipient {
    if (point.length !== KEY_BYTES) throw new Error('an X25519 public key is 32 bytes');
    return new X25519Recipient(Buffer.from(point), publicKeyObject(point));
  }

  /**
   * Parses an `age1…` recipient; a usage error otherwise, quoting the text only when it looks
   * like a recipient (public), so a secret pasted in the wrong place is never echoed.
   */
  static parse(text: string): X25519Recipient {
    const decoded = /^[\x21-\x7e]+$/.test(text) ? decodeBech32(Buffer.from(text, 'latin1')) : undefined;
    if (!decoded || decoded.hrp !== RECIPIENT_HRP || decoded.data.length !== KEY_BYTES) {
      decoded?.data.fill(0);
      const shown = /^age1[a-z0-9]{0,100}$/.test(text) ? ` "${text}"` : '';
      throw badKey(`malformed age recipient${shown}: expected an X25519 public key "age1…" (as printed by age-keygen)`);
    }
    return X25519Recipient.fromPublicKey(Buffer.from(decoded.data));
  }

  toString(): string {
    return encodeBech32(RECIPIENT_HRP, this.publicKey);
  }

  wrap(fileKey: Buffer): Stanza[] {
    const ephemeral = generateKeyPairSync('x25519');
    const share = rawPublicKey(ephemeral.publicKey);
    const secret = sharedSecret(ephemeral.privateKey, this.keyObject);
    const key = wrapKey(secret, share, this.publicKey);
    try {
      return [{ args: [STANZA_TYPE, encodeBase64(share)], body: seal(key, fileKey) }];
    } finally {
      secret.fill(0);
      key.fill(0);
    }
  }
}

export class X25519Identity implements AgeIdentity {
  private secret: Buffer | undefined;
  private privateKey: KeyObject | undefined;
  /** This identity's own public key (the recipient it answers to). */
  readonly recipient: X25519Recipient;

  private constructor(secret: Buffer) {
    this.secret = secret;
    const der = Buffer.concat([PKCS8_PREFIX, secret]);
    try {
      this.privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
    this.recipient = X25519Recipient.fromPublicKey(rawPublicKey(createPublicKey(this.privateKey)));
  }

  static generate(): X25519Identity {
    const { privateKey } = generateKeyPairSync('x25519');
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const secret = Buffer.from(der.subarray(PKCS8_PREFIX.length));
    der.fill(0);
    return new X25519Identity(secret);
  }

  /**
   * Parses an `AGE-SECRET-KEY-1…` identity from ASCII bytes (so the secret need never be a
   * string). Undefined when the bytes are not one; the caller words the error without them.
   */
  static parse(bytes: Uint8Array): X25519Identity | undefined {
    const decoded = decodeBech32(bytes);
    if (!decoded || decoded.hrp !== IDENTITY_HRP || decoded.data.length !== KEY_BYTES) {
      decoded?.data.fill(0);
      return undefined;
    }
    const secret = Buffer.from(decoded.data);
    decoded.data.fill(0);
    return new X25519Identity(secret);
  }

  /** The `AGE-SECRET-KEY-1…` text of this identity (for key files the user asked to create). */
  encode(): string {
    return encodeBech32(IDENTITY_HRP, this.liveSecret());
  }

  unwrap(stanzas: readonly Stanza[]): Buffer | undefined {
    const privateKey = this.livePrivateKey();
    for (const stanza of stanzas) {
      if (stanza.args[0] !== STANZA_TYPE) continue;
      if (stanza.args.length !== 2) throw badHeader('an X25519 stanza must have exactly one argument');
      const share = decodeBase64(stanza.args[1]!);
      if (!share || share.length !== KEY_BYTES) throw badHeader('an X25519 stanza share is not 32 bytes of canonical base64');
      if (stanza.body.length !== FILE_KEY_BYTES + 16) throw badHeader('an X25519 stanza body is not a 16-byte file key and its tag');
      const secret = sharedSecret(privateKey, publicKeyObject(share));
      const key = wrapKey(secret, share, this.recipient.publicKey);
      const fileKey = open(key, stanza.body);
      secret.fill(0);
      key.fill(0);
      if (fileKey) return fileKey;
    }
    return undefined;
  }

  destroy(): void {
    this.secret?.fill(0);
    this.secret = undefined;
    this.privateKey = undefined;
  }

  private liveSecret(): Buffer {
    if (!this.secret) throw new Error('this age identity was destroyed');
    return this.secret;
  }

  private livePrivateKey(): KeyObject {
    if (!this.privateKey) throw new Error('this age identity was destroyed');
    return this.privateKey;
  }
}
