import { describe, expect, it } from 'vitest';
import { SafetyRules, UnsafeEntryError, normalizeEntryPath, resolveLinkTarget, symlinkEscapes } from '../../runner/archive/safety.js';
import type { TarEntry } from '../../runner/archive/tar-reader.js';

function entry(path: string, type = 'File', linkpath = '', size = 0): TarEntry {
  return { path, type, size, mode: 0o644, uid: 0, gid: 0, mtime: 0, mtimeNsec: 0, linkpath, offset: 0, headerOffset: 0, storedSize: size };
}

function feed(entries: TarEntry[]): SafetyRules {
  const rules = new SafetyRules();
  for (const e of entries) rules.check(e);
  rules.finish();
  return rules;
}

describe('normalizeEntryPath', () => {
  it('strips ./, empty and . components and trailing slashes', () => {
    expect(normalizeEntryPath('./')).toBe('');
    expect(normalizeEntryPath('.')).toBe('');
    expect(normalizeEntryPath('./a/b/')).toBe('a/b');
    expect(normalizeEntryPath('a//./b')).toBe('a/b');
    expect(normalizeEntryPath('ünï/日本 語')).toBe('ünï/日本 語');
    expect(normalizeEntryPath('..a/b..')).toBe('..a/b..');
  });

  it.each([
    ['/etc/passwd', 'absolute'],
    ['../x', '".."'],
    ['./a/../../x', '".."'],
    ['a/..', '".."'],
    ['', 'empty'],
    ['a\0b', 'NUL'],
  ])('refuses %j', (raw, why) => {
    expect(() => normalizeEntryPath(raw)).toThrow(UnsafeEntryError);
    expect(() => normalizeEntryPath(raw)).toThrow(why);
  });
});

describe('symlink targets', () => {
  it('resolves relative targets from the link directory', () => {
    expect(symlinkEscapes('a/link', '../b')).toBe(false);
    expect(symlinkEscapes('a/link', '../../b')).toBe(true);
    expect(symlinkEscapes('link', '..')).toBe(true);
    expect(symlinkEscapes('link', '.')).toBe(false);
    expect(symlinkEscapes('a/b/link', '../../x/../y')).toBe(false);
    expect(symlinkEscapes('link', '/etc')).toBe(true);
  });

  it('follows the archive own symlinks', () => {
    const links = new Map([['d/up', '..']]);
    // d/up/.. is "d" lexically, but d/up is the root, so d/up/.. is the root's parent.
    expect(resolveLinkTarget([], 'd/up/..')).toEqual(['d']);
    expect(resolveLinkTarget([], 'd/up/..', links)).toBeUndefined();
    expect(resolveLinkTarget([], 'd/up/x', links)).toEqual(['x']);
  });

  it('treats a link loop as staying inside (the kernel cannot follow it)', () => {
    const links = new Map([
      ['a', 'b'],
      ['b', 'a'],
    ]);
    expect(resolveLinkTarget([], 'a/x', links)).toBeDefined();
  });
});

describe('SafetyRules', () => {
  it('accepts an ordinary archive and counts its bytes', () => {
    const rules = feed([
      entry('./', 'Directory'),
      entry('./a/', 'Directory'),
      entry('./a/f', 'File', '', 10),
      entry('./a/h', 'Link', './a/f'),
      entry('./a/l', 'SymbolicLink', 'f'),
      entry('./top', 'SymbolicLink', 'a/../a/l'),
      entry('./self', 'SymbolicLink', '.'),
      entry('./dangling', 'SymbolicLink', 'nowhere/x'),
      entry('./implicit/parent/file', 'File', '', 5),
    ]);
    expect(rules.totalBytes).toBe(15);
    expect(rules.entries).toBe(9);
  });

  it('lets a later entry replace an earlier non-directory (appended archives)', () => {
    expect(() => feed([entry('a', 'SymbolicLink', 'b'), entry('a', 'File'), entry('h', 'Link', 'a')])).not.toThrow();
    expect(() => feed([entry('a', 'File'), entry('a', 'SymbolicLink', 'b'), entry('h', 'Link', 'a')])).toThrow('not a regular file earlier');
    expect(() => feed([entry('d/', 'Directory'), entry('d/', 'Directory'), entry('d/x')])).not.toThrow();
  });

  it.each<[string, TarEntry[], string]>([
    ['an absolute path', [entry('/tmp/x')], 'absolute'],
    ['a .. component', [entry('a/../../x')], '".."'],
    ['a character device', [entry('dev', 'CharacterDevice')], 'character device'],
    ['a block device', [entry('dev', 'BlockDevice')], 'block device'],
    ['a FIFO', [entry('fifo', 'FIFO')], 'FIFO'],
    ['an unknown type', [entry('x', 'SparseFile')], 'unsupported entry type'],
    ['an escaping symlink', [entry('l', 'SymbolicLink', '../x')], 'outside the target'],
    ['an absolute symlink', [entry('l', 'SymbolicLink', '/etc')], 'absolute path'],
    ['an empty symlink', [entry('l', 'SymbolicLink', '')], 'empty target'],
    ['a hard link outside', [entry('h', 'Link', '../etc/passwd')], 'outside the target'],
    ['an absolute hard link', [entry('h', 'Link', '/etc/passwd')], 'outside the target'],
    ['a hard link to nothing earlier', [entry('h', 'Link', 'later'), entry('later')], 'not a regular file earlier'],
    ['a hard link to a directory', [entry('d/', 'Directory'), entry('h', 'Link', 'd')], 'not a regular file earlier'],
    ['a hard link to a symlink', [entry('f'), entry('l', 'SymbolicLink', 'f'), entry('h', 'Link', 'l')], 'not a regular file earlier'],
    ['a write through a symlink', [entry('sub/', 'Directory'), entry('l', 'SymbolicLink', 'sub'), entry('l/x')], 'through the symlink ./l'],
    ['a deep write through a symlink', [entry('l', 'SymbolicLink', '.'), entry('l/a/b/c')], 'through the symlink ./l'],
    ['a directory over a symlink', [entry('l', 'SymbolicLink', '.'), entry('l/', 'Directory')], 'would replace a symlink'],
    ['a file over a directory', [entry('d/', 'Directory'), entry('d')], 'would replace a directory'],
    ['a file over an implicit directory', [entry('d/x'), entry('d')], 'would replace a directory'],
    ['the root as a file', [entry('./')], 'target directory itself'],
    ['a chain that escapes', [entry('d/', 'Directory'), entry('d/up', 'SymbolicLink', '..'), entry('esc', 'SymbolicLink', 'd/up/..')], 'outside the target'],
    ['a chain that escapes, defined backwards', [entry('esc', 'SymbolicLink', 'd/up/..'), entry('d/', 'Directory'), entry('d/up', 'SymbolicLink', '..')], 'through other symlinks'],
  ])('refuses %s', (_what, entries, message) => {
    expect(() => feed(entries)).toThrow(UnsafeEntryError);
    expect(() => feed(entries)).toThrow(message);
  });
});

describe('SafetyRules with allowAbsoluteSymlinks', () => {
  const allowing = (entries: TarEntry[]) => {
    const rules = new SafetyRules({ allowAbsoluteSymlinks: true });
    for (const e of entries) rules.check(e);
    rules.finish();
    return rules;
  };

  it('accepts absolute targets, and relative links resolved through them', () => {
    expect(() => allowing([entry('current', 'SymbolicLink', '/srv/releases/v2'), entry('config', 'SymbolicLink', 'current/config.yaml')])).not.toThrow();
    expect(() => allowing([entry('config', 'SymbolicLink', 'current/config.yaml'), entry('current', 'SymbolicLink', '/srv/releases/v2')])).not.toThrow();
  });

  it.each<[string, TarEntry[], string]>([
    ['a write through an absolute symlink', [entry('abs', 'SymbolicLink', '/etc'), entry('abs/passwd')], 'through the symlink ./abs'],
    ['a relative link that escapes', [entry('l', 'SymbolicLink', '../x')], 'outside the target'],
    ['an absolute hard link', [entry('h', 'Link', '/etc/passwd')], 'outside the target'],
    ['an absolute path', [entry('/tmp/x')], 'absolute'],
  ])('still refuses %s', (_what, entries, message) => {
    expect(() => allowing(entries)).toThrow(message);
  });
});
