/**
 * Bech32 (BIP 173) as age uses it: no length limit on the data part, all lowercase or all
 * uppercase, the checksum computed over the lowercase form. Decoding works on bytes so a secret
 * key read from a file never has to become a JavaScript string (strings cannot be wiped).
 */

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
const VALUE_OF = new Int8Array(128).fill(-1);
for (let i = 0; i < CHARSET.length; i++) {
  VALUE_OF[CHARSET.charCodeAt(i)] = i;
  VALUE_OF[CHARSET.toUpperCase().charCodeAt(i)] = i;
}

function polymodStep(checksum: number, value: number): number {
  const top = checksum >>> 25;
  let next = ((checksum & 0x1ffffff) << 5) ^ value;
  for (let i = 0; i < 5; i++) if ((top >>> i) & 1) next ^= GENERATOR[i]!;
  return next >>> 0;
}

/** Checksum state after the expanded human-readable part (lowercased). */
function hrpPolymod(hrp: Uint8Array): number {
  let checksum = 1;
  const lower = (c: number) => (c >= 0x41 && c <= 0x5a ? c + 0x20 : c);
  for (const c of hrp) checksum = polymodStep(checksum, lower(c) >>> 5);
  checksum = polymodStep(checksum, 0);
  for (const c of hrp) checksum = polymodStep(checksum, lower(c) & 31);
  return checksum;
}

/** Regroups bits (8 → 5 with padding, or 5 → 8 rejecting non-zero padding). */
function convertBits(data: Uint8Array, from: number, to: number, pad: boolean): Uint8Array | undefined {
  const out = new Uint8Array(Math.ceil((data.length * from) / to));
  let length = 0;
  let accumulator = 0;
  let bits = 0;
  const mask = (1 << to) - 1;
  for (const value of data) {
    accumulator = ((accumulator << from) | value) & 0xffffff;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out[length++] = (accumulator >>> bits) & mask;
    }
  }
  if (pad) {
    if (bits > 0) out[length++] = (accumulator << (to - bits)) & mask;
  } else if (bits >= from || ((accumulator << (to - bits)) & mask) !== 0) {
    out.fill(0);
    return undefined;
  }
  const result = out.slice(0, length);
  out.fill(0);
  return result;
}

/** Encodes data under the human-readable part; an uppercase hrp gives an uppercase string. */
export function encodeBech32(hrp: string, data: Uint8Array): string {
  const upper = hrp === hrp.toUpperCase() && hrp !== hrp.toLowerCase();
  const hrpBytes = Buffer.from(hrp.toLowerCase(), 'latin1');
  const words = convertBits(data, 8, 5, true)!;
  let checksum = hrpPolymod(hrpBytes);
  for (const w of words) checksum = polymodStep(checksum, w);
  for (let i = 0; i < 6; i++) checksum = polymodStep(checksum, 0);
  checksum = (checksum ^ 1) >>> 0;
  let text = `${hrp.toLowerCase()}1`;
  for (const w of words) text += CHARSET[w];
  for (let i = 0; i < 6; i++) text += CHARSET[(checksum >>> (5 * (5 - i))) & 31];
  words.fill(0);
  return upper ? text.toUpperCase() : text;
}

export interface Bech32 {
  /** The human-readable part, in the case it was written in. */
  hrp: string;
  data: Uint8Array;
}

/** Decodes ASCII bytes; undefined when they are not valid Bech32 (mixed case, bad checksum…). */
export function decodeBech32(text: Uint8Array): Bech32 | undefined {
  let hasLower = false;
  let hasUpper = false;
  let separator = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c < 0x21 || c > 0x7e) return undefined;
    if (c >= 0x61 && c <= 0x7a) hasLower = true;
    if (c >= 0x41 && c <= 0x5a) hasUpper = true;
    if (c === 0x31) separator = i;
  }
  if ((hasLower && hasUpper) || separator < 1 || separator + 7 > text.length) return undefined;
  const hrp = text.subarray(0, separator);
  const words = new Uint8Array(text.length - separator - 1);
  let checksum = hrpPolymod(hrp);
  for (let i = 0; i < words.length; i++) {
    const c = text[separator + 1 + i]!;
    const value = c < 128 ? VALUE_OF[c]! : -1;
    if (value < 0) {
      words.fill(0);
      return undefined;
    }
    words[i] = value;
    checksum = polymodStep(checksum, value);
  }
  const data = checksum === 1 ? convertBits(words.subarray(0, words.length - 6), 5, 8, false) : undefined;
  words.fill(0);
  return data ? { hrp: Buffer.from(hrp).toString('latin1'), data } : undefined;
}
