import fs from 'node:fs';
import type { PaxRecord, PaxValue } from './pax.js';
import type { Xattr } from './syscall-helper.js';

/**
 * Extended attributes, POSIX ACLs and file capabilities in tar, the way GNU tar 1.34 stores them
 * with `--xattrs --acls` (format posix): every xattr as a pax record `SCHILY.xattr.<name>` with
 * its raw value (ACLs as the kernel's binary `system.posix_acl_access` / `_default`, capabilities
 * as `security.capability`), and each ACL also as text in `SCHILY.acl.access` /
 * `SCHILY.acl.default` (`user::rw-\nuser:1000:r--\n…`; we write numeric ids, which GNU tar and
 * setfacl read). Reading accepts either form: the binary xattr when present, else the text
 * (names in it are looked up in /etc/passwd and /etc/group, as GNU tar does).
 */

export type { Xattr } from './syscall-helper.js';

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';
export const CAPABILITY = 'security.capability';

const XATTR_KEY = 'SCHILY.xattr.';
const ACL_TEXT_KEYS: Record<string, string> = { 'SCHILY.acl.access': ACL_ACCESS, 'SCHILY.acl.default': ACL_DEFAULT };
const SELINUX_KEY = 'RHT.security.selinux';

const TAG = { userObj: 0x01, user: 0x02, groupObj: 0x04, group: 0x08, mask: 0x10, other: 0x20 } as const;
const UNDEFINED_ID = 0xffffffff;
const ACL_VERSION = 2;

/** The pax records for a set of xattrs (ACLs twice: binary xattr and text). */
export function xattrPaxRecords(xattrs: readonly Xattr[]): [string, PaxValue][] {
  const records: [string, PaxValue][] = [];
  for (const x of xattrs) {
    if (x.name === ACL_ACCESS || x.name === ACL_DEFAULT) {
      const text = aclToText(x.value);
      if (text !== undefined) records.push([x.name === ACL_ACCESS ? 'SCHILY.acl.access' : 'SCHILY.acl.default', text]);
    }
  }
  for (const x of xattrs) records.push([XATTR_KEY + x.name, x.value]);
  return records;
}

/** Whether a pax key is one of the xattr/ACL keys this module reads. */
/**
 * The ACLs to remove from a restored path so that it keeps only the ones its archive entry gives
 * it (`xattrs`), as GNU tar `--acls` does: what it inherited from a default ACL, or had before
 * (undefined when there is nothing to remove).
 */
export function aclsToDrop(xattrs: readonly Xattr[] | undefined, directory: boolean): { dropAccessAcl: boolean; dropDefaultAcl: boolean } | undefined {
  const dropAccessAcl = !xattrs?.some((x) => x.name === ACL_ACCESS);
  const dropDefaultAcl = directory && !xattrs?.some((x) => x.name === ACL_DEFAULT);
  return dropAccessAcl || dropDefaultAcl ? { dropAccessAcl, dropDefaultAcl } : undefined;
}

export function isXattrKey(key: string): boolean {
  return key.startsWith(XATTR_KEY) || key in ACL_TEXT_KEYS || key === SELINUX_KEY;
}

/**
 * The xattrs an entry's pax records describe. ACL text is used only when the binary form is
 * absent; what cannot be converted is reported in `problems` (and left out).
 */
export function xattrsFromPax(records: readonly PaxRecord[]): { xattrs: Xattr[]; problems: string[] } {
  const xattrs: Xattr[] = [];
  const problems: string[] = [];
  const names = new Set<string>();
  for (const r of records) {
    if (!r.key.startsWith(XATTR_KEY)) continue;
    const name = r.key.slice(XATTR_KEY.length);
    if (name === '' || names.has(name)) continue;
    names.add(name);
    xattrs.push({ name, value: Buffer.from(r.value) });
  }
  for (const r of records) {
    const name = ACL_TEXT_KEYS[r.key] ?? (r.key === SELINUX_KEY ? 'security.selinux' : undefined);
    if (name === undefined || names.has(name)) continue;
    if (name === 'security.selinux') {
      names.add(name);
      xattrs.push({ name, value: Buffer.concat([r.value, Buffer.of(0)]) });
      continue;
    }
    const converted = aclFromText(r.value.toString('utf8'));
    if (typeof converted === 'string') {
      problems.push(`its ${r.key === 'SCHILY.acl.access' ? 'access' : 'default'} ACL cannot be restored: ${converted}`);
      continue;
    }
    if (converted.length === 0) continue;
    names.add(name);
    xattrs.push({ name, value: converted });
  }
  return { xattrs, problems };
}

interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

function decodeAcl(value: Buffer): AclEntry[] | undefined {
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || value.readUInt32LE(0) !== ACL_VERSION) return undefined;
  const entries: AclEntry[] = [];
  for (let at = 4; at < value.length; at += 8) entries.push({ tag: value.readUInt16LE(at), perm: value.readUInt16LE(at + 2), id: value.readUInt32LE(at + 4) });
  return entries;
}

/**
 * What an access ACL grants the owning group in effect (its group:: entry, limited by the mask),
 * as permission bits 0–7; undefined when the value is not an ACL. When the ACL itself cannot be
 * restored, the file's group bits (which show the mask) are narrowed to this, so losing the ACL
 * never grants the group more than it had.
 */
export function aclGroupLimit(value: Buffer): number | undefined {
  const entries = decodeAcl(value);
  if (!entries) return undefined;
  const group = entries.find((e) => e.tag === TAG.groupObj)?.perm;
  const mask = entries.find((e) => e.tag === TAG.mask)?.perm ?? 7;
  return group === undefined ? undefined : group & mask;
}

function encodeAcl(entries: readonly AclEntry[]): Buffer {
  const out = Buffer.alloc(4 + entries.length * 8);
  out.writeUInt32LE(ACL_VERSION, 0);
  entries.forEach((e, i) => {
    out.writeUInt16LE(e.tag, 4 + i * 8);
    out.writeUInt16LE(e.perm, 6 + i * 8);
    out.writeUInt32LE(e.id, 8 + i * 8);
  });
  return out;
}

function perms(p: number): string {
  return `${p & 4 ? 'r' : '-'}${p & 2 ? 'w' : '-'}${p & 1 ? 'x' : '-'}`;
}

/** The kernel's binary ACL as `getfacl -n`-style text (one entry per line), or undefined if it is not one. */
export function aclToText(value: Buffer): string | undefined {
  const entries = decodeAcl(value);
  if (!entries) return undefined;
  let text = '';
  for (const e of entries) {
    switch (e.tag) {
      case TAG.userObj:
        text += `user::${perms(e.perm)}\n`;
        break;
      case TAG.user:
        text += `user:${e.id}:${perms(e.perm)}\n`;
        break;
      case TAG.groupObj:
        text += `group::${perms(e.perm)}\n`;
        break;
      case TAG.group:
        text += `group:${e.id}:${perms(e.perm)}\n`;
        break;
      case TAG.mask:
        text += `mask::${perms(e.perm)}\n`;
        break;
      case TAG.other:
        text += `other::${perms(e.perm)}\n`;
        break;
      default:
        return undefined;
    }
  }
  return text;
}

/** The tag words of ACL text: the entry without a qualifier, and (users, groups) the named one. */
const USER_TAG = { unnamed: TAG.userObj, named: TAG.user, kind: 'user' } as const;
const GROUP_TAG = { unnamed: TAG.groupObj, named: TAG.group, kind: 'group' } as const;
const ACL_TEXT_TAGS = new Map<string, { unnamed: number; named?: number; kind?: 'user' | 'group' }>([
  ['user', USER_TAG],
  ['u', USER_TAG],
  ['group', GROUP_TAG],
  ['g', GROUP_TAG],
  ['mask', { unnamed: TAG.mask }],
  ['m', { unnamed: TAG.mask }],
  ['other', { unnamed: TAG.other }],
  ['o', { unnamed: TAG.other }],
]);

/** ACL text (acl_to_text / getfacl form; entries by newline or comma, `#` comments) as the kernel's binary form, or why not. */
export function aclFromText(text: string): Buffer | string {
  const entries: AclEntry[] = [];
  for (const raw of text.split(/[\n,]/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const parts = line.split(':');
    if (parts.length < 2 || parts.length > 3) return `"${line}" is not an ACL entry`;
    const [word, qualifier, permText] = parts.length === 3 ? parts : [parts[0], '', parts[1]];
    const perm = parsePerms(permText!);
    if (perm === undefined) return `"${line}" has bad permissions`;
    const tag = ACL_TEXT_TAGS.get(word!);
    if (tag === undefined) return `"${line}" has an unknown tag`;
    if (tag.kind === undefined || qualifier === '') {
      entries.push({ tag: tag.unnamed, perm, id: UNDEFINED_ID });
      continue;
    }
    const id = resolveId(qualifier!, tag.kind);
    if (id === undefined) return `unknown ${tag.kind} "${qualifier}"`;
    entries.push({ tag: tag.named!, perm, id });
  }
  // The kernel wants entries ordered by tag, named ones by id.
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  return entries.length === 0 ? Buffer.alloc(0) : encodeAcl(entries);
}

function parsePerms(text: string): number | undefined {
  let p = 0;
  for (const c of text) {
    if (c === 'r') p |= 4;
    else if (c === 'w') p |= 2;
    else if (c === 'x') p |= 1;
    else if (c !== '-') return undefined;
  }
  return p;
}

let idTables: { user: Map<string, number>; group: Map<string, number> } | undefined;

function resolveId(qualifier: string, kind: 'user' | 'group'): number | undefined {
  if (/^\d+$/.test(qualifier)) {
    const n = Number(qualifier);
    return n < UNDEFINED_ID ? n : undefined;
  }
  idTables ??= { user: readIds('/etc/passwd'), group: readIds('/etc/group') };
  return idTables[kind].get(qualifier);
}

function readIds(file: string): Map<string, number> {
  const ids = new Map<string, number>();
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return ids;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length >= 3 && /^\d+$/.test(fields[2]!)) ids.set(fields[0]!, Number(fields[2]));
  }
  return ids;
}
