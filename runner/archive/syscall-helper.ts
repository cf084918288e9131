import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { OperationError } from '../errors.js';

/**
 * The system calls Node.js does not offer — extended attributes (llistxattr, lgetxattr,
 * lsetxattr), utimensat with exact nanoseconds (libuv passes times as doubles, which at
 * today's epoch are 238 ns apart), and SEEK_DATA/SEEK_HOLE — made by one long-running
 * helper process: a short Perl program (perl-base is part of every Debian and Ubuntu image,
 * the runner image's included) that calls them through Perl's `syscall`. No native addon, no
 * process per file: requests are binary frames written in batches down one pipe, answered in
 * order on the other, so the helper's work overlaps with the runner's.
 *
 * Frames: request `op:u8 length:u32be body`; response `length:u32be body`, in request order.
 */

/** One extended attribute: name as text (xattr names are ASCII in practice), value as bytes. */
export interface Xattr {
  name: string;
  value: Buffer;
}

export interface Extent {
  offset: number;
  length: number;
}

/**
 * What `apply` sets on a path, in this order: ACLs removed (optional), xattrs, then mode
 * (optional), then times (optional).
 */
export interface ApplyRequest {
  /**
   * Remove the access ACL, and the default ACL, when the path has one: ACLs it inherited from a
   * directory's default ACL that the archive does not give it (GNU tar `--acls` does the same).
   */
  dropAccessAcl?: boolean;
  dropDefaultAcl?: boolean;
  xattrs?: readonly Xattr[];
  mode?: number;
  /** Seconds and nanoseconds (0–999999999); seconds may be negative. */
  mtime?: { sec: number; nsec: number };
}

/**
 * A step of `apply` or `writeFile` that failed: which xattr (by index), removing an ACL (index 0:
 * access, 1: default), the mode, the times, creating, writing or the owner.
 */
export interface ApplyFailure {
  step: 'xattr' | 'dropAcl' | 'mode' | 'times' | 'open' | 'write' | 'owner';
  index: number;
  errno: number;
}

const STEPS: Record<string, ApplyFailure['step']> = { x: 'xattr', r: 'dropAcl', m: 'mode', t: 'times', o: 'open', w: 'write', c: 'owner' };

function parseFailures(body: Buffer): ApplyFailure[] {
  const count = body.readUInt32BE(0);
  const failures: ApplyFailure[] = [];
  for (let i = 0; i < count; i++) {
    const at = 4 + i * 9;
    failures.push({ step: STEPS[String.fromCharCode(body[at]!)] ?? 'write', index: body.readUInt32BE(at + 1), errno: body.readUInt32BE(at + 5) });
  }
  return failures;
}

function lengthPrefixed(data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, data]);
}

function xattrParts(xattrs: readonly Xattr[]): Buffer[] {
  return xattrs.flatMap((x) => [lengthPrefixed(Buffer.from(x.name, 'latin1')), lengthPrefixed(x.value)]);
}

const SYSCALLS: Record<string, { llistxattr: number; lgetxattr: number; lsetxattr: number; fsetxattr: number; utimensat: number; lremovexattr: number }> = {
  x64: { llistxattr: 195, lgetxattr: 192, lsetxattr: 189, fsetxattr: 190, utimensat: 280, lremovexattr: 198 },
  arm64: { llistxattr: 12, lgetxattr: 9, lsetxattr: 6, fsetxattr: 7, utimensat: 88, lremovexattr: 15 },
};

/** What `writeFile` creates: a new regular file with its content and metadata, in this order. */
export interface WriteRequest {
  /** Permission bits the file is created with (the umask is 0 in the helper). */
  createMode: number;
  /** Set after the xattrs, when it differs from createMode or has setuid/setgid/sticky bits. */
  finalMode?: number;
  /** Numeric owner, when it is restored (running as root). */
  owner?: { uid: number; gid: number };
  xattrs?: readonly Xattr[];
  mtime?: { sec: number; nsec: number };
}

export const ERRNO = { EPERM: 1, ENOENT: 2, E2BIG: 7, EACCES: 13, ENOTDIR: 20, ENOSPC: 28, ERANGE: 34, ELOOP: 40, ENODATA: 61, EOPNOTSUPP: 95, EDQUOT: 122 } as const;

/** Short names of the errors the helper can report, for messages. */
export function errnoName(errno: number): string {
  const name = Object.entries(ERRNO).find(([, n]) => n === errno)?.[0];
  return name ?? `errno ${errno}`;
}

const PERL = String.raw`
use strict; use warnings;
my ($LLIST, $LGET, $LSET, $FSET, $UTIMENSAT, $OFLAGS, $LREMOVE) = @ARGV;
binmode STDIN; binmode STDOUT;
umask 0;
$| = 0;
my $in = ''; my $out = '';
sub flush_out { while (length $out) { my $w = syswrite(STDOUT, $out); exit 1 unless defined $w; substr($out, 0, $w) = ''; } }
sub pending_input { my $rin = ''; vec($rin, fileno(STDIN), 1) = 1; return select($rin, undef, undef, 0) > 0; }
sub list_xattrs {
  my ($path) = @_;
  for (1 .. 8) {
    my $size = syscall($LLIST, $path, 0, 0);
    return -$! if $size < 0;
    return (0) if $size == 0;
    my $buf = "\0" x $size;
    my $got = syscall($LLIST, $path, $buf, $size);
    if ($got < 0) { next if $! == 34; return -$!; }
    my @pairs;
    for my $name (split /\0/, substr($buf, 0, $got)) {
      next if $name eq '';
      my $n = "$name\0";
      my $ok = 0;
      for (1 .. 8) {
        my $vs = syscall($LGET, $path, $n, 0, 0);
        if ($vs < 0) { last if $! == 61; return -$!; }
        my $val = "\0" x ($vs || 1);
        my $g = syscall($LGET, $path, $n, $val, $vs);
        if ($g < 0) { next if $! == 34; last if $! == 61; return -$!; }
        push @pairs, $name, substr($val, 0, $g);
        last;
      }
    }
    return (0, @pairs);
  }
  return -34;
}
sub data_map {
  my ($path) = @_;
  open(my $fh, '<:raw', $path) or return -$!;
  my $end = -s $fh;
  my @ext; my $pos = 0;
  while ($pos < $end) {
    my $d = sysseek($fh, $pos, 3);
    if (!defined $d) { last if $! == 6; my $e = -$!; close $fh; return $e; }
    my $h = sysseek($fh, $d, 4);
    if (!defined $h) { my $e = -$!; close $fh; return $e; }
    $h = $end if $h > $end;
    push @ext, $d + 0, $h - $d;
    $pos = $h;
  }
  close $fh;
  return (0, @ext);
}
sub apply {
  my ($body) = @_;
  my ($flags, $mode, $as, $ans, $ms, $mns, $count) = unpack('N N q> N q> N N', $body);
  my $at = 4 + 4 + 8 + 4 + 8 + 4 + 4;
  my @x;
  for (1 .. $count) {
    my ($name, $value) = unpack("x$at N/a N/a", $body);
    $at += 8 + length($name) + length($value);
    push @x, $name, $value;
  }
  my $path = substr($body, $at) . "\0";
  my @fail;
  my $drop = 0;
  for my $acl ('system.posix_acl_access', 'system.posix_acl_default') {
    if ($flags & (4 << $drop)) {
      my $r = syscall($LREMOVE, $path, "$acl\0");
      push @fail, 'r', $drop, $! + 0 if $r < 0 && $! != 61 && $! != 95;
    }
    $drop++;
  }
  for (my $i = 0; $i < @x; $i += 2) {
    my $v = $x[$i + 1];
    my $r = syscall($LSET, $path, "$x[$i]\0", $v, length($v), 0);
    push @fail, 'x', $i / 2, $! + 0 if $r < 0;
  }
  if ($flags & 2) { chmod($mode, substr($path, 0, -1)) or push @fail, 'm', 0, $! + 0; }
  if ($flags & 1) {
    my $r = syscall($UTIMENSAT, -100, $path, pack('q q q q', $as, $ans, $ms, $mns), 0x100);
    push @fail, 't', 0, $! + 0 if $r < 0;
  }
  my $resp = pack('N', @fail / 3);
  while (@fail) { my ($k, $i, $e) = splice(@fail, 0, 3); $resp .= pack('a N N', $k, $i, $e); }
  return $resp;
}
sub failures { my $resp = pack('N', @_ / 3); while (@_) { my ($k, $i, $e) = splice(@_, 0, 3); $resp .= pack('a N N', $k, $i, $e); } return $resp; }
sub write_file {
  my ($body) = @_;
  my ($flags, $cmode, $fmode, $uid, $gid, $s, $ns, $count) = unpack('N N N N N q> N N', $body);
  my $at = 20 + 8 + 4 + 4;
  my @x;
  for (1 .. $count) {
    my ($name, $value) = unpack("x$at N/a N/a", $body);
    $at += 8 + length($name) + length($value);
    push @x, $name, $value;
  }
  my ($path) = unpack("x$at N/a", $body);
  $at += 4 + length($path);
  my $fh;
  unless (sysopen($fh, $path, $OFLAGS, $cmode)) {
    # A second entry for the same path (appended archives): the later one wins.
    return failures('o', 0, $! + 0) unless $! == 17 && unlink($path) && sysopen($fh, $path, $OFLAGS, $cmode);
  }
  my @fail;
  my $length = length($body) - $at;
  my $done = 0;
  while ($done < $length) {
    my $w = syswrite($fh, $body, $length - $done, $at + $done);
    unless (defined $w) { push @fail, 'w', 0, $! + 0; last; }
    $done += $w;
  }
  if (!@fail) {
    if ($flags & 4) { chown($uid, $gid, $fh) or push @fail, 'c', 0, $! + 0; }
    for (my $i = 0; $i < @x; $i += 2) {
      my $v = $x[$i + 1];
      my $r = syscall($FSET, fileno($fh), "$x[$i]\0", $v, length($v), 0);
      push @fail, 'x', $i / 2, $! + 0 if $r < 0;
    }
    if ($flags & 2) { chmod($fmode, $fh) or push @fail, 'm', 0, $! + 0; }
    if ($flags & 1) {
      my $r = syscall($UTIMENSAT, fileno($fh), 0, pack('q q q q', $s, $ns, $s, $ns), 0);
      push @fail, 't', 0, $! + 0 if $r < 0;
    }
  }
  close($fh) or push @fail, 'w', 0, $! + 0;
  return failures(@fail);
}
while (1) {
  while (length($in) >= 5) {
    my ($op, $len) = unpack('a N', $in);
    last if length($in) < 5 + $len;
    my $body = substr($in, 5, $len);
    substr($in, 0, 5 + $len) = '';
    my $resp;
    if ($op eq 'X') {
      my ($status, @pairs) = list_xattrs("$body\0");
      $resp = pack('l> N', $status, @pairs / 2);
      while (@pairs) { my $k = shift @pairs; my $v = shift @pairs; $resp .= pack('N/a N/a', $k, $v); }
    } elsif ($op eq 'D') {
      my ($status, @ext) = data_map($body);
      $resp = pack('l> N', $status, @ext / 2) . pack('Q>*', @ext);
    } elsif ($op eq 'A') {
      $resp = apply($body);
    } elsif ($op eq 'W') {
      $resp = write_file($body);
    } elsif ($op eq 'L') {
      my ($target, $path) = unpack('N/a N/a', $body);
      if (link($target, $path)) { $resp = failures(); }
      elsif ($! == 17 && unlink($path) && link($target, $path)) { $resp = failures(); }
      else { $resp = failures('o', 0, $! + 0); }
    } elsif ($op eq 'P') {
      $resp = 'pong';
    } else {
      exit 2;
    }
    $out .= pack('N', length $resp) . $resp;
    flush_out() if length($out) > 65536;
  }
  flush_out() unless pending_input();
  my $r = sysread(STDIN, $in, 1 << 20, length $in);
  last unless $r;
}
flush_out();
`;

type Pending = { bytes: number; resolve: (body: Buffer) => void; reject: (error: Error) => void };

/** Requests in flight are limited so that a slow helper makes the runner wait instead of buffering without bound. */
const MAX_IN_FLIGHT_BYTES = 2 * 1024 * 1024;
/** …and in number: each waiting request holds a promise and its buffers (tiny files make many). */
const MAX_IN_FLIGHT_REQUESTS = 512;

export class SyscallHelper {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending: Pending[] = [];
  private input: Buffer[] = [];
  private inputBytes = 0;
  /** Bytes of the requests not answered yet (queued or sent). */
  private outstanding = 0;
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private failure: Error | undefined;
  private drainWaiters: (() => void)[] = [];
  private closed = false;

  private constructor(numbers: (typeof SYSCALLS)[string]) {
    const openFlags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
    this.child = spawn('perl', ['-e', PERL, ...[numbers.llistxattr, numbers.lgetxattr, numbers.lsetxattr, numbers.fsetxattr, numbers.utimensat, openFlags, numbers.lremovexattr].map(String)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    this.child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString();
    });
    this.child.stdout.on('data', (chunk: Buffer) => this.receive(chunk));
    this.child.stdin.on('error', () => undefined);
    this.child.on('error', (error) => this.fail(new OperationError(`the system-call helper (perl) failed: ${error.message}`, 'HELPER')));
    this.child.on('exit', (code, signal) => {
      if (this.closed && this.pending.length === 0) return;
      this.fail(new OperationError(`the system-call helper (perl) stopped (${signal ?? `exit ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`, 'HELPER'));
    });
  }

  /**
   * Starts the helper, or returns why it cannot run (no perl, an architecture whose system-call
   * numbers are not known); the caller then warns that what needs it is not preserved.
   */
  static start(): SyscallHelper | string {
    const numbers = SYSCALLS[process.arch];
    if (process.platform !== 'linux' || !numbers) return `extended attributes and nanosecond times need Linux on x64 or arm64 (this is ${process.platform}/${process.arch})`;
    const probe = spawnSync('perl', ['-e', 'exit 0'], { stdio: 'ignore' });
    if (probe.error || probe.status !== 0) return 'perl is not installed (the helper that reads and writes extended attributes runs on perl-base)';
    return new SyscallHelper(numbers);
  }

  /** All extended attributes of a path (not following a final symlink); [] when it has none. */
  async xattrs(path: Buffer): Promise<{ xattrs: Xattr[] } | { errno: number }> {
    const body = await this.request('X', [path]);
    const status = body.readInt32BE(0);
    if (status < 0) return { errno: -status };
    const count = body.readUInt32BE(4);
    const xattrs: Xattr[] = [];
    let at = 8;
    for (let i = 0; i < count; i++) {
      const nameLength = body.readUInt32BE(at);
      const name = body.toString('latin1', at + 4, at + 4 + nameLength);
      at += 4 + nameLength;
      const valueLength = body.readUInt32BE(at);
      xattrs.push({ name, value: Buffer.from(body.subarray(at + 4, at + 4 + valueLength)) });
      at += 4 + valueLength;
    }
    return { xattrs };
  }

  /** The data extents of an open file (SEEK_DATA/SEEK_HOLE through `/proc/<pid>/fd/<fd>`). */
  async dataMap(fd: number): Promise<{ extents: Extent[] } | { errno: number }> {
    const body = await this.request('D', [Buffer.from(`/proc/${process.pid}/fd/${fd}`)]);
    const status = body.readInt32BE(0);
    if (status < 0) return { errno: -status };
    const count = body.readUInt32BE(4);
    const extents: Extent[] = [];
    for (let i = 0; i < count; i++) {
      extents.push({ offset: Number(body.readBigUInt64BE(8 + i * 16)), length: Number(body.readBigUInt64BE(16 + i * 16)) });
    }
    return { extents };
  }

  /** Removes ACLs, sets xattrs, then the mode, then the times of a path (never following a final symlink). */
  async apply(path: Buffer, request: ApplyRequest): Promise<ApplyFailure[]> {
    const xattrs = request.xattrs ?? [];
    const head = Buffer.alloc(36);
    const flags = (request.mtime ? 1 : 0) | (request.mode !== undefined ? 2 : 0) | (request.dropAccessAcl ? 4 : 0) | (request.dropDefaultAcl ? 8 : 0);
    head.writeUInt32BE(flags, 0);
    head.writeUInt32BE(request.mode ?? 0, 4);
    const sec = BigInt(request.mtime?.sec ?? 0);
    const nsec = request.mtime?.nsec ?? 0;
    head.writeBigInt64BE(sec, 8); // atime = mtime: the archive keeps no atime
    head.writeUInt32BE(nsec, 16);
    head.writeBigInt64BE(sec, 20);
    head.writeUInt32BE(nsec, 28);
    head.writeUInt32BE(xattrs.length, 32);
    return parseFailures(await this.request('A', [head, ...xattrParts(xattrs), path]));
  }

  /**
   * Creates a new regular file (O_EXCL | O_NOFOLLOW; an existing one of that name is replaced)
   * with its content, then owner, xattrs, final mode and times — one request, no round trip per step.
   */
  async writeFile(path: Buffer, data: Buffer, request: WriteRequest): Promise<ApplyFailure[]> {
    const xattrs = request.xattrs ?? [];
    const head = Buffer.alloc(36);
    const flags = (request.mtime ? 1 : 0) | (request.finalMode !== undefined ? 2 : 0) | (request.owner ? 4 : 0);
    head.writeUInt32BE(flags, 0);
    head.writeUInt32BE(request.createMode, 4);
    head.writeUInt32BE(request.finalMode ?? 0, 8);
    head.writeUInt32BE(request.owner?.uid ?? 0, 12);
    head.writeUInt32BE(request.owner?.gid ?? 0, 16);
    head.writeBigInt64BE(BigInt(request.mtime?.sec ?? 0), 20);
    head.writeUInt32BE(request.mtime?.nsec ?? 0, 28);
    head.writeUInt32BE(xattrs.length, 32);
    return parseFailures(await this.request('W', [head, ...xattrParts(xattrs), lengthPrefixed(path), data]));
  }

  /** A hard link `path` to the existing `target` (an existing non-directory at `path` is replaced). */
  async link(target: Buffer, path: Buffer): Promise<ApplyFailure[]> {
    return parseFailures(await this.request('L', [lengthPrefixed(target), lengthPrefixed(path)]));
  }

  /** Resolves once the helper has caught up enough for more requests; undefined when it already has. */
  backpressure(): Promise<void> | undefined {
    if ((this.outstanding < MAX_IN_FLIGHT_BYTES && this.pending.length < MAX_IN_FLIGHT_REQUESTS) || this.failure) return undefined;
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Waits for every request to be answered. */
  async idle(): Promise<void> {
    if (this.pending.length === 0) return;
    await this.request('P', []);
  }

  /**
   * Stops the helper at once and waits (briefly, synchronously) until it can make no more system
   * calls, so a signal handler can remove what it was writing into right after.
   */
  killSync(): void {
    this.closed = true;
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 1000; i++) {
      let state: string | undefined;
      try {
        state = fs.readFileSync(`/proc/${pid}/stat`, 'latin1').replace(/^.*\) /s, '')[0];
      } catch {
        return; // gone
      }
      if (state === 'Z' || state === 'X') return;
      Atomics.wait(pause, 0, 0, 1);
    }
  }

  /** Ends the helper (after the requests in flight). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    this.child.stdin.end();
    if (this.pending.length === 0) this.child.kill();
  }

  private request(op: string, body: readonly Buffer[]): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new OperationError('the system-call helper was already closed', 'HELPER'));
    let length = 0;
    for (const part of body) length += part.length;
    const header = Buffer.alloc(5);
    header.write(op, 0, 'latin1');
    header.writeUInt32BE(length, 1);
    this.queued.push(header, ...body);
    this.queuedBytes += 5 + length;
    this.outstanding += 5 + length;
    if (this.queuedBytes >= 64 * 1024) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return new Promise((resolve, reject) => this.pending.push({ bytes: 5 + length, resolve, reject }));
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.queuedBytes === 0 || this.failure) return;
    const parts = this.queued;
    this.queued = [];
    this.queuedBytes = 0;
    // One writev: the parts (file contents among them) are not copied into one buffer first.
    this.child.stdin.cork();
    for (const part of parts) if (part.length) this.child.stdin.write(part);
    this.child.stdin.uncork();
  }

  private receive(chunk: Buffer): void {
    this.input.push(chunk);
    this.inputBytes += chunk.length;
    let data = this.input.length === 1 ? this.input[0]! : Buffer.concat(this.input, this.inputBytes);
    let at = 0;
    while (data.length - at >= 4) {
      const length = data.readUInt32BE(at);
      if (data.length - at - 4 < length) break;
      const body = data.subarray(at + 4, at + 4 + length);
      at += 4 + length;
      const waiter = this.pending.shift();
      if (!waiter) {
        this.fail(new OperationError('the system-call helper answered a request it was never sent', 'HELPER'));
        return;
      }
      this.outstanding -= waiter.bytes;
      waiter.resolve(body);
    }
    data = data.subarray(at);
    this.input = data.length ? [Buffer.from(data)] : [];
    this.inputBytes = data.length;
    if (this.outstanding < MAX_IN_FLIGHT_BYTES / 2 && this.pending.length < MAX_IN_FLIGHT_REQUESTS / 2) this.wake();
    if (this.closed && this.pending.length === 0) this.child.kill();
  }

  private wake(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const p of this.pending.splice(0)) p.reject(error);
    this.wake();
  }
}

/**
 * Several helper processes: requests about one path always go to the same one (by a hash of a
 * key, the entry's relative path), so they run in order, while different paths run in parallel
 * — file creation is bound by per-file latency, which parallel processes overlap.
 */
export class HelperPool {
  private constructor(private readonly helpers: SyscallHelper[]) {}

  /** Starts `count` helpers, or says why they cannot run. */
  static start(count: number): HelperPool | string {
    const helpers: SyscallHelper[] = [];
    for (let i = 0; i < count; i++) {
      const helper = SyscallHelper.start();
      if (typeof helper === 'string') {
        for (const h of helpers) h.close();
        return helper;
      }
      helpers.push(helper);
    }
    return new HelperPool(helpers);
  }

  /** The helper for requests about `key`. */
  for(key: string): SyscallHelper {
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return this.helpers[(h >>> 0) % this.helpers.length]!;
  }

  backpressure(): Promise<void> | undefined {
    const waits = this.helpers.map((h) => h.backpressure()).filter((w): w is Promise<void> => w !== undefined);
    return waits.length ? Promise.all(waits).then(() => undefined) : undefined;
  }

  /** Waits until every helper has answered everything sent to it. */
  async idle(): Promise<void> {
    await Promise.all(this.helpers.map((h) => h.idle()));
  }

  close(): void {
    for (const h of this.helpers) h.close();
  }

  /** Stops every helper at once (see SyscallHelper.killSync). */
  killSync(): void {
    for (const h of this.helpers) h.killSync();
  }
}
