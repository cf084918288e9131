/**
 * The 512-byte POSIX ustar header block, written in place into an output buffer. Names given
 * here are ASCII and shorter than 100 bytes (longer or non-ASCII names go into a pax header,
 * pax.ts); numbers that do not fit the octal fields are clamped here and carried in pax records.
 */

export const BLOCK = 512;
export const MAX_OCTAL_SIZE = 0o77777777777;
export const MAX_OCTAL_ID = 0o7777777;

export const TYPE_FLAG = { File: '0', Link: '1', SymbolicLink: '2', Directory: '5', ExtendedHeader: 'x' } as const;
export type UstarType = keyof typeof TYPE_FLAG;

export interface UstarFields {
  /** ASCII, < 100 bytes. */
  name: string;
  type: UstarType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Whole seconds (clamped to what the field holds). */
  mtime: number;
  /** ASCII, < 100 bytes. */
  linkname: string;
}

function octal(out: Buffer, at: number, width: number, value: number, max: number): void {
  const text = Math.min(Math.max(Math.floor(value), 0), max).toString(8).padStart(width - 1, '0');
  out.write(text, at, width - 1, 'latin1');
  out[at + width - 1] = 0;
}

/** Writes a complete header block (checksum included) at `at`. */
export function writeUstar(out: Buffer, at: number, f: UstarFields): void {
  out.fill(0, at, at + BLOCK);
  out.write(f.name, at, 100, 'latin1');
  octal(out, at + 100, 8, f.mode & 0o7777, 0o7777777);
  octal(out, at + 108, 8, f.uid, MAX_OCTAL_ID);
  octal(out, at + 116, 8, f.gid, MAX_OCTAL_ID);
  octal(out, at + 124, 12, f.size, MAX_OCTAL_SIZE);
  octal(out, at + 136, 12, f.mtime, MAX_OCTAL_SIZE);
  out[at + 156] = TYPE_FLAG[f.type].charCodeAt(0);
  out.write(f.linkname, at + 157, 100, 'latin1');
  out.write('ustar\u000000', at + 257, 8, 'latin1');
  octal(out, at + 329, 8, 0, 0);
  octal(out, at + 337, 8, 0, 0);
  // The checksum is computed with its own field as spaces: 6 octal digits, NUL, space.
  out.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + BLOCK; i++) sum += out[i]!;
  out.write(sum.toString(8).padStart(6, '0'), at + 148, 6, 'latin1');
  out[at + 154] = 0;
  out[at + 155] = 0x20;
}
