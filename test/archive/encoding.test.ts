import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compareWalkOrder, decodeName, displayName, encodeName } from '../../runner/archive/names.js';
import { encodePax, formatPaxTime, parsePax, parsePaxTime, paxLength } from '../../runner/archive/pax.js';
import { SparseCursor, SparseMapReader, encodeSparseMap } from '../../runner/archive/sparse.js';
import { writeUstar } from '../../runner/archive/ustar.js';
import { aclFromText, aclGroupLimit, aclToText, xattrPaxRecords, xattrsFromPax } from '../../runner/archive/xattrs.js';

/** The byte-level encodings an archive depends on: names, pax records and times, ustar blocks, sparse maps, ACLs. */

describe('names as lossless strings', () => {
  it('round-trips any bytes, and leaves valid UTF-8 as it is', () => {
    for (let i = 0; i < 2000; i++) {
      const bytes = randomBytes(1 + (i % 40));
      expect(encodeName(decodeName(bytes)).equals(bytes), bytes.toString('hex')).toBe(true);
    }
    expect(decodeName(Buffer.from('ünïcødé-😀/x'))).toBe('ünïcødé-😀/x');
  });

  it('keeps U+FFFD and two different invalid bytes apart (they all look alike to plain Node)', () => {
    const names = [[0x78, 0xef, 0xbf, 0xbd], [0x78, 0xff], [0x78, 0xfe]].map((b) => decodeName(Buffer.from(b)));
    expect(new Set(names).size).toBe(3);
    expect(names[0]).toBe('x\ufffd');
    expect(names[1]).toBe('x\udcff');
    expect(displayName(names[1]!)).toBe('x\\xff');
  });

  it('escapes overlong forms, UTF-16 surrogates and truncated sequences byte by byte', () => {
    for (const hex of ['c0af', 'eda080', 'f4908080', 'e282', 'f0']) {
      const bytes = Buffer.from(hex, 'hex');
      const name = decodeName(bytes);
      expect(name.isWellFormed(), hex).toBe(false);
      expect(encodeName(name).toString('hex')).toBe(hex);
    }
  });

  it('orders paths as a sorted depth-first walk: a directory with its subtree before the next sibling', () => {
    const paths = ['a-b', 'a/b', 'a', 'a/b/c', 'b', 'a.', 'a/a'];
    expect([...paths].sort(compareWalkOrder)).toEqual(['a', 'a/a', 'a/b', 'a/b/c', 'a-b', 'a.', 'b']);
  });
});

describe('pax records and times', () => {
  it('writes times as GNU tar does, negative ones with the sign over the fraction, and reads them back', () => {
    expect(formatPaxTime({ sec: -315619200, nsec: 500_000_000 })).toBe('-315619199.5');
    expect(formatPaxTime({ sec: -1, nsec: 1 })).toBe('-0.999999999');
    expect(formatPaxTime({ sec: 1577836800, nsec: 999_999_999 })).toBe('1577836800.999999999');
    expect(formatPaxTime({ sec: 1, nsec: 0 })).toBe('1');
    expect(parsePaxTime('-315619199.5')).toEqual({ sec: -315619200, nsec: 500_000_000 });
    expect(parsePaxTime('1.0000000019')).toEqual({ sec: 1, nsec: 1 });
    expect(parsePaxTime('12x')).toBeUndefined();
    for (let i = 0; i < 1000; i++) {
      const time = { sec: Math.floor((Math.random() - 0.5) * 2 ** 34), nsec: Math.floor(Math.random() * 1e9) };
      expect(parsePaxTime(formatPaxTime(time))).toEqual(time);
    }
  });

  it('gets the record length right around digit boundaries, with binary values and newlines', () => {
    for (let n = 0; n < 1100; n += 7) {
      const value = Buffer.alloc(n, 0x0a);
      const body = encodePax([['SCHILY.xattr.user.x', value]]);
      expect(body.length).toBe(paxLength([['SCHILY.xattr.user.x', value]]));
      const [record] = parsePax(body);
      expect(record!.key).toBe('SCHILY.xattr.user.x');
      expect(record!.value.equals(value)).toBe(true);
    }
  });

  it('writes a ustar block that GNU tar accepts (checksum and fields)', () => {
    const block = Buffer.alloc(512, 0xee);
    writeUstar(block, 0, { name: './a.txt', type: 'File', mode: 0o644, uid: 1000, gid: 1000, size: 5, mtime: 1_700_000_000, linkname: '' });
    let sum = 8 * 0x20;
    for (let i = 0; i < 512; i++) if (i < 148 || i >= 156) sum += block[i]!;
    expect(Number.parseInt(block.toString('latin1', 148, 154), 8)).toBe(sum);
    expect(block.toString('latin1', 257, 265)).toBe('ustar\u000000');
    expect(block.toString('latin1', 124, 135)).toBe('00000000005');
  });
});

describe('GNU sparse 1.0 maps', () => {
  it('writes the map GNU tar writes, with the empty extent at the end of a trailing hole', () => {
    const block = encodeSparseMap({ extents: [{ offset: 4997120, length: 4096 }], realSize: 10485760 });
    expect(block.length).toBe(512);
    expect(block.toString('latin1').replace(/\0+$/, '')).toBe('2\n4997120\n4096\n10485760\n0\n');
  });

  it('reads a map fed one byte at a time, and places data and holes where they belong', () => {
    const extents = [
      { offset: 0, length: 3 },
      { offset: 100, length: 2 },
    ];
    const block = encodeSparseMap({ extents, realSize: 200 });
    const reader = new SparseMapReader();
    let used = 0;
    for (let i = 0; i < block.length; i++) used += reader.push(block.subarray(i, i + 1));
    expect(used).toBe(512);
    expect(reader.done).toBe(true);
    expect(reader.extents().filter((e) => e.length > 0)).toEqual(extents);
    const events: string[] = [];
    const cursor = new SparseCursor(extents, 200);
    cursor.feed(Buffer.from('abcde'), (piece, at) => events.push(`data ${at} ${piece}`), (at, n) => events.push(`hole ${at} ${n}`));
    cursor.finish((at, n) => events.push(`hole ${at} ${n}`));
    expect(events).toEqual(['data 0 abc', 'hole 3 97', 'data 100 de', 'hole 102 98']);
  });
});

describe('POSIX ACLs', () => {
  const acl = aclFromText('user::rw-\nuser:1234:rwx\ngroup::r--\ngroup:55:r--\nmask::rwx\nother::r--\n') as Buffer;

  it('converts between the kernel binary form and text both ways (numeric ids, kernel order)', () => {
    expect(Buffer.isBuffer(acl)).toBe(true);
    // The value getfattr shows for `setfacl -m u:1234:rwx,g:55:r` on a 0644 file.
    expect(acl.toString('hex')).toBe('0200000001000600ffffffff02000700d204000004000400ffffffff080004003700000010000700ffffffff20000400ffffffff');
    expect(aclToText(acl)).toBe('user::rw-\nuser:1234:rwx\ngroup::r--\ngroup:55:r--\nmask::rwx\nother::r--\n');
    // Short tags, commas, any order: sorted into the order the kernel wants.
    expect(aclFromText('o::r,g:55:r,m::rwx,u:1234:rwx,g::r,u::rw-')).toEqual(acl);
    expect(aclFromText('user:root:rwx\nuser::rwx\ngroup::r-x\nmask::rwx\nother::r-x')).toBeInstanceOf(Buffer);
    expect(aclFromText('user:no-such-user-here:rwx')).toMatch(/unknown user/);
  });

  it('is stored both as SCHILY.xattr and as SCHILY.acl text, and read back preferring the binary form', () => {
    const records = xattrPaxRecords([{ name: 'system.posix_acl_access', value: acl }, { name: 'user.note', value: Buffer.from('x') }]);
    expect(records.map(([k]) => k)).toEqual(['SCHILY.acl.access', 'SCHILY.xattr.system.posix_acl_access', 'SCHILY.xattr.user.note']);
    const fromText = xattrsFromPax([{ key: 'SCHILY.acl.access', value: Buffer.from(aclToText(acl)!) }]);
    expect(fromText.xattrs).toEqual([{ name: 'system.posix_acl_access', value: acl }]);
    // GNU tar writes names for ids it can resolve; the binary form wins when both are there.
    const both = xattrsFromPax([
      { key: 'SCHILY.acl.access', value: Buffer.from('user::rw-\ngroup:no-such-group-here:rwx\n') },
      { key: 'SCHILY.xattr.system.posix_acl_access', value: acl },
    ]);
    expect(both).toEqual({ xattrs: [{ name: 'system.posix_acl_access', value: acl }], problems: [] });
  });

  it('says what a lost ACL gave the owning group, so the group bits can be narrowed to it', () => {
    expect(aclGroupLimit(acl)).toBe(0o4);
  });
});
