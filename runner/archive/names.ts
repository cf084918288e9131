import { isUtf8 } from 'node:buffer';

/**
 * File names are bytes. Inside the runner a name (or a path, or a symlink target) is a JS string
 * that holds those bytes losslessly: valid UTF-8 decodes as usual, and every byte that is not
 * part of valid UTF-8 becomes the lone surrogate U+DC80 + (byte - 0x80), the "surrogateescape"
 * scheme Python uses for file names. Valid UTF-8 never decodes to a lone surrogate, so the
 * mapping is one to one, `/` and NUL stay themselves, and everything that compares, normalizes
 * or logs paths works on ordinary strings. Bytes come back only at the file-system boundary
 * (`fsPath`) and in tar headers (`encodeName`).
 */

const ESCAPE_BASE = 0xdc00;

/** Bytes → lossless string. */
export function decodeName(bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  return decodeEscaping(bytes);
}

function decodeEscaping(bytes: Buffer): string {
  let out = '';
  let i = 0;
  let runStart = 0;
  while (i < bytes.length) {
    const length = validSequenceLength(bytes, i);
    if (length > 0) {
      i += length;
      continue;
    }
    if (runStart < i) out += bytes.toString('utf8', runStart, i);
    out += String.fromCharCode(ESCAPE_BASE + bytes[i]!);
    i++;
    runStart = i;
  }
  if (runStart < bytes.length) out += bytes.toString('utf8', runStart);
  return out;
}

/** Length of the well-formed UTF-8 sequence at i (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF), 0 if none. */
function validSequenceLength(b: Buffer, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number) => i + k < b.length && (b[i + k]! & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const c1 = b[i + 1]!;
    if (c === 0xe0 && c1 < 0xa0) return 0; // overlong
    if (c === 0xed && c1 > 0x9f) return 0; // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const c1 = b[i + 1]!;
    if (c === 0xf0 && c1 < 0x90) return 0; // overlong
    if (c === 0xf4 && c1 > 0x8f) return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

/** Lossless string → bytes (inverse of decodeName). */
export function encodeName(name: string): Buffer {
  if (name.isWellFormed()) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let runStart = 0;
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < name.length) {
      const next = name.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a proper surrogate pair
        continue;
      }
    }
    if (code < 0xd800 || code > 0xdfff) continue;
    if (runStart < i) parts.push(Buffer.from(name.slice(runStart, i), 'utf8'));
    // An escaped byte; any other lone surrogate cannot come from decodeName and is written as U+FFFD.
    parts.push(code >= 0xdc80 && code <= 0xdcff ? Buffer.of(code - ESCAPE_BASE) : Buffer.from('\ufffd', 'utf8'));
    runStart = i + 1;
  }
  if (runStart < name.length) parts.push(Buffer.from(name.slice(runStart), 'utf8'));
  return Buffer.concat(parts);
}

/** A path for Node's fs functions: the string itself when it is plain UTF-8, else its bytes. */
export function fsPath(name: string): string | Buffer {
  return name.isWellFormed() ? name : encodeName(name);
}

/** Byte length of a lossless string once encoded. */
export function byteLength(name: string): number {
  return name.isWellFormed() ? Buffer.byteLength(name, 'utf8') : encodeName(name).length;
}

/** A name as people read it: escaped bytes shown as \xNN (for log lines and messages). */
export function displayName(name: string): string {
  if (name.isWellFormed()) return name;
  return name.replace(/[\udc80-\udcff]/g, (c) => `\\x${(c.charCodeAt(0) - ESCAPE_BASE).toString(16).padStart(2, '0')}`);
}

/**
 * The order of a depth-first walk with sorted names, for two relative paths: component by
 * component, each compared by UTF-16 code units. Equal to comparing the strings with '/'
 * ranked below every other character, so a directory's whole subtree sorts before its next
 * sibling ("a", "a/b", "a-b"). Every sorted walk and every sorted merge uses this one order.
 */
export function compareWalkOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === 0x2f) return -1;
    if (y === 0x2f) return 1;
    return x - y;
  }
  return a.length - b.length;
}

declare global {
  interface String {
    /** ES2024; Node 24 has it. */
    isWellFormed(): boolean;
  }
}
