import { IntegrityError } from '../errors.js';

/**
 * POSIX pax extended-header records (`<length> <key>=<value>\n`), with values as bytes: a path
 * that is not UTF-8 is stored as its raw bytes, as GNU tar does with --format=posix, and xattr
 * values are binary. Also the pax form of times: decimal seconds with up to nine fraction
 * digits, negative before 1970, where the sign covers the fraction too (`-315619199.5` is
 * 1960-01-01T00:00:00.5Z), as GNU tar writes them.
 */

export type PaxValue = string | Buffer;

export interface PaxRecord {
  key: string;
  value: Buffer;
}

/** Encodes records into the body of a pax 'x' header. */
export function encodePax(records: readonly (readonly [string, PaxValue])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [key, raw] of records) {
    const value = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
    const rest = Buffer.byteLength(key, 'utf8') + value.length + 3; // ' ', '=', '\n'
    let length = rest + String(rest).length;
    if (String(length).length !== String(rest).length) length = rest + String(length).length;
    parts.push(Buffer.from(`${length} ${key}=`, 'utf8'), value, NEWLINE);
  }
  return Buffer.concat(parts);
}

const NEWLINE = Buffer.from('\n');

/** Parses a pax header body; values may hold newlines and any bytes (the length says where they end). */
export function parsePax(body: Buffer): PaxRecord[] {
  const records: PaxRecord[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (body[offset] === 0) break;
    const space = body.indexOf(0x20, offset);
    if (space === -1 || space - offset > 20) throw malformed();
    const length = Number(body.toString('latin1', offset, space));
    if (!Number.isInteger(length) || length <= space - offset || offset + length > body.length || body[offset + length - 1] !== 0x0a) throw malformed();
    const eq = body.indexOf(0x3d, space + 1);
    const end = offset + length - 1;
    if (eq !== -1 && eq < end) records.push({ key: body.toString('utf8', space + 1, eq), value: body.subarray(eq + 1, end) });
    offset += length;
  }
  return records;
}

function malformed(): IntegrityError {
  return new IntegrityError('corrupt archive: malformed pax extended header', 'CORRUPT');
}

export interface Time {
  /** Whole seconds since the epoch, rounded down (so negative for times before 1970). */
  sec: number;
  /** 0–999999999. */
  nsec: number;
}

/** The pax decimal form of a time. */
export function formatPaxTime(time: Time): string {
  if (time.nsec === 0) return String(time.sec);
  if (time.sec >= 0) return `${time.sec}.${fraction(time.nsec)}`;
  // sec + nsec/1e9 is negative: written as -(|value|).
  return `-${-(time.sec + 1)}.${fraction(1_000_000_000 - time.nsec)}`;
}

function fraction(nsec: number): string {
  return String(nsec).padStart(9, '0').replace(/0+$/, '');
}

/** Parses a pax time; digits beyond nanoseconds are cut off. Undefined when it is not a decimal number. */
export function parsePaxTime(text: string): Time | undefined {
  const match = /^([-+]?)(\d{1,16})(?:\.(\d*))?$/.exec(text.trim());
  if (!match) return undefined;
  const whole = Number(match[2]);
  const nsec = Number((match[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (match[1] !== '-') return { sec: whole, nsec };
  return nsec === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1_000_000_000 - nsec };
}

/** Byte length of the pax header body for these records (same as encodePax(records).length). */
export function paxLength(records: readonly (readonly [string, PaxValue])[]): number {
  let total = 0;
  for (const [key, raw] of records) {
    const rest = key.length + (typeof raw === 'string' ? Buffer.byteLength(raw, 'utf8') : raw.length) + 3;
    let length = rest + String(rest).length;
    if (String(length).length !== String(rest).length) length = rest + String(length).length;
    total += length;
  }
  return total;
}
