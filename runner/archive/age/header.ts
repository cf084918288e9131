import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { decodeBase64, encodeBase64 } from './base64.js';
import { armoredFile, badHeader, notAgeFile } from './errors.js';

/**
 * The age v1 text header: a version line, one or more recipient stanzas, and a MAC line.
 *
 *     age-encryption.org/v1
 *     -> X25519 <base64 ephemeral share>
 *     <base64 body, wrapped at 64 columns; the last line is shorter, possibly empty>
 *     --- <base64 HMAC-SHA-256 of everything up to and including "---">
 */

export interface Stanza {
  /** args[0] is the stanza type (e.g. "X25519"); every argument is 1+ visible ASCII characters. */
  args: string[];
  body: Buffer;
}

export interface ParsedHeader {
  stanzas: Stanza[];
  mac: Buffer;
  /** The header bytes the MAC covers: from the version line up to and including "---". */
  macInput: Buffer;
  /** Length of the whole header, final line feed included; the payload starts here. */
  length: number;
}

const VERSION_LINE = 'age-encryption.org/v1';
const VERSION_PREFIX = Buffer.from('age-encryption.org/');
const ARMOR_PREFIX = Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----');
const COLUMNS = 64;
/** A header larger than this is refused (about 10,000 X25519 stanzas), so reading it stays bounded. */
export const MAX_HEADER_BYTES = 1024 * 1024;
const LF = 0x0a;

/** True when the bytes begin like an age file (binary format); false when they cannot be one. */
export function looksLikeAge(head: Buffer): boolean {
  const n = Math.min(head.length, VERSION_PREFIX.length);
  return n > 0 && head.subarray(0, n).equals(VERSION_PREFIX.subarray(0, n));
}

/** True when the bytes begin with age's ASCII armor. */
export function looksLikeArmoredAge(head: Buffer): boolean {
  const n = Math.min(head.length, ARMOR_PREFIX.length);
  return n > 0 && head.subarray(0, n).equals(ARMOR_PREFIX.subarray(0, n));
}

export function headerMacKey(fileKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, Buffer.alloc(0), 'header', 32));
}

function computeMac(fileKey: Buffer, macInput: Buffer): Buffer {
  const key = headerMacKey(fileKey);
  try {
    return createHmac('sha256', key).update(macInput).digest();
  } finally {
    key.fill(0);
  }
}

/** The header for these stanzas, MAC included, ready to be written before the payload. */
export function encodeHeader(stanzas: readonly Stanza[], fileKey: Buffer): Buffer {
  let text = `${VERSION_LINE}\n`;
  for (const stanza of stanzas) {
    if (stanza.args.length === 0 || stanza.args.some((a) => !/^[\x21-\x7e]+$/.test(a))) {
      throw new Error(`invalid age stanza arguments: ${JSON.stringify(stanza.args)}`);
    }
    text += `-> ${stanza.args.join(' ')}\n`;
    const body = encodeBase64(stanza.body);
    // Full 64-column lines, then always one shorter (maybe empty) line that ends the stanza.
    for (let i = 0; i <= body.length; i += COLUMNS) text += `${body.slice(i, i + COLUMNS)}\n`;
  }
  text += '---';
  const macInput = Buffer.from(text, 'latin1');
  return Buffer.concat([macInput, Buffer.from(` ${encodeBase64(computeMac(fileKey, macInput))}\n`, 'latin1')]);
}

/** Checks the header MAC with the unwrapped file key. */
export function verifyHeaderMac(header: ParsedHeader, fileKey: Buffer): boolean {
  return timingSafeEqual(computeMac(fileKey, header.macInput), header.mac);
}

/**
 * Parses the header at the start of `data`. Returns undefined when more bytes are needed (the
 * caller appends and retries); throws an IntegrityError when the bytes are not a valid age v1
 * header. Every rule of the format is enforced: LF line ends only, canonical unpadded base64,
 * 64-column body lines ending with a short line, a 32-byte MAC.
 */
export function parseHeader(data: Buffer, endOfInput = false): ParsedHeader | undefined {
  if (data.length === 0) {
    if (endOfInput) throw notAgeFile('the file is empty');
    return undefined;
  }
  if (!looksLikeAge(data)) {
    if (looksLikeArmoredAge(data)) throw armoredFile();
    throw notAgeFile('it does not start with "age-encryption.org/"');
  }
  let position = 0;
  /** The next line without its LF, or undefined when it has not fully arrived yet. */
  const nextLine = (): string | undefined => {
    const end = data.indexOf(LF, position);
    if (end < 0) {
      if (data.length > MAX_HEADER_BYTES) throw badHeader(`larger than ${MAX_HEADER_BYTES} bytes`);
      if (endOfInput) throw badHeader('the file ends inside the header (truncated)');
      return undefined;
    }
    const line = data.toString('latin1', position, end);
    position = end + 1;
    return line;
  };

  const version = nextLine();
  if (version === undefined) return undefined;
  if (version !== VERSION_LINE) throw badHeader(`unsupported version line ${JSON.stringify(version.slice(0, 40))} (only ${VERSION_LINE} is known)`);

  const stanzas: Stanza[] = [];
  for (;;) {
    const lineStart = position;
    const line = nextLine();
    if (line === undefined) return undefined;
    if (line.startsWith('---')) {
      if (stanzas.length === 0) throw badHeader('no recipient stanza');
      if (!line.startsWith('--- ')) throw badHeader('the MAC line must be "--- " and the MAC');
      const mac = decodeBase64(line.slice(4));
      if (!mac || mac.length !== 32) throw badHeader('the header MAC is not 32 bytes of canonical base64');
      return { stanzas, mac, macInput: data.subarray(0, lineStart + 3), length: position };
    }
    if (!line.startsWith('-> ')) throw badHeader('expected a stanza ("-> ") or the MAC line ("--- ")');
    const args = line.slice(3).split(' ');
    if (args.some((a) => !/^[\x21-\x7e]+$/.test(a))) throw badHeader('a stanza argument is empty or holds a character outside visible ASCII');
    const bodyLines: string[] = [];
    for (;;) {
      const bodyLine = nextLine();
      if (bodyLine === undefined) return undefined;
      if (bodyLine.length > COLUMNS) throw badHeader('a stanza body line is longer than 64 columns');
      bodyLines.push(bodyLine);
      if (bodyLine.length < COLUMNS) break;
    }
    const body = decodeBase64(bodyLines.join(''));
    if (!body) throw badHeader('a stanza body is not canonical unpadded base64');
    stanzas.push({ args, body });
  }
}
