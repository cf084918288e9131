import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DUMPS_ARCHIVE_DIR,
  checkDumps,
  dumpArchivePath,
  dumpContainerCommand,
  dumpContainerEnv,
  validateDumpName,
} from '../../runner/consistency/dumps.js';
import { DUMP_WRAPPER_SCRIPT } from '../../runner/consistency/dump-wrapper.js';
import { ExitCode, OperationError, UsageError } from '../../runner/errors.js';
import { useTempDirs } from '../helpers/tree.js';

const tempDir = useTempDirs();

/** The shells the wrapper must work in: Debian's /bin/sh (dash) and busybox ash (alpine-based images). */
const SHELLS: { label: string; argv: string[] }[] = [
  { label: 'dash', argv: ['/bin/sh'] },
  { label: 'busybox ash', argv: ['busybox', 'sh'] },
];

/** Runs one dump the way its init container does: the wrapper command, the dump's command as arguments, the contract env. */
function runDump(shell: string[], dumpsDir: string, name: string, command: string[]) {
  const [, ...wrapperArgs] = dumpContainerCommand();
  const env = Object.fromEntries(dumpContainerEnv(name, dumpsDir).map((e) => [e.name, e.value]));
  const result = spawnSync(shell[0]!, [...shell.slice(1), ...wrapperArgs, ...command], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', cwd: '/' });
  return { code: result.status, stderr: result.stderr };
}

function failure(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

describe('dump wrapper (the init container side of the contract)', () => {
  for (const shell of SHELLS) {
    it(`runs the command in an empty $PVC_BACKUP_DUMP_DIR and writes the marker after it succeeds (${shell.label})`, async () => {
      const dumps = await tempDir('dumps');
      fs.mkdirSync(path.join(dumps, 'app'));
      fs.writeFileSync(path.join(dumps, 'app/stale-from-an-earlier-run'), 'old');
      const r = runDump(shell.argv, dumps, 'app', ['sh', '-c', 'test "$(pwd)" = "$PVC_BACKUP_DUMP_DIR" && test -z "$(ls -A)" && read x; mkdir sub && printf "dump data" > sub/data.sql']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe(`pvc-backup dump app: running sh in ${dumps}/app\npvc-backup dump app: done\n`);
      expect(fs.readdirSync(path.join(dumps, 'app'))).toEqual(['sub']);
      const marker = JSON.parse(fs.readFileSync(path.join(dumps, 'app.complete'), 'utf8')) as Record<string, string>;
      expect(marker).toEqual({ name: 'app', startedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), finishedAt: expect.stringMatching(/Z$/) });
      expect(fs.readdirSync(dumps).sort()).toEqual(['app', 'app.complete']);

      const [checked] = checkDumps(dumps, ['app']);
      expect(checked).toEqual({ name: 'app', dir: path.join(dumps, 'app'), files: 1, bytes: 9, startedAt: marker.startedAt, finishedAt: marker.finishedAt });
    });

    it(`passes a failing command's status on and leaves no marker, also over an earlier complete dump (${shell.label})`, async () => {
      const dumps = await tempDir('dumps');
      expect(runDump(shell.argv, dumps, 'db', ['sh', '-c', 'echo ok > out']).code).toBe(0);
      const r = runDump(shell.argv, dumps, 'db', ['sh', '-c', 'echo partial > out; echo "connection refused" >&2; exit 3']);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('connection refused\npvc-backup dump db: sh exited with status 3; no backup is made\n');
      expect(fs.existsSync(path.join(dumps, 'db.complete'))).toBe(false);
      const error = failure(() => checkDumps(dumps, ['db']));
      expect(error).toBeInstanceOf(OperationError);
      expect(error.message).toBe(
        `pre-backup dump "db" did not complete: ${dumps}/db.complete is missing (its command failed or was stopped; see the logs of its init container); no backup is made`,
      );
    });
  }

  it('a command that is not found fails the dump (status 127)', async () => {
    const dumps = await tempDir('dumps');
    const r = runDump(['/bin/sh'], dumps, 'db', ['pg_dump_that_is_not_installed', '--file=x']);
    expect(r.code).toBe(127);
    expect(fs.existsSync(path.join(dumps, 'db.complete'))).toBe(false);
  });

  it('refuses to run without a command (exit 2), and never prints the arguments', async () => {
    const dumps = await tempDir('dumps');
    const none = runDump(['/bin/sh'], dumps, 'db', []);
    expect(none).toEqual({ code: 2, stderr: "pvc-backup dump db: no command given: set the dump's command\n" });
    const secret = runDump(['/bin/sh'], dumps, 'db', ['sh', '-c', 'echo x > f', 'arg0', '--password=hunter2']);
    expect(secret.code).toBe(0);
    expect(secret.stderr).not.toContain('hunter2');
  });

  it('passes TERM on to the dump command: it stops at once, and no marker is written', async () => {
    const dumps = await tempDir('dumps');
    const [, ...wrapperArgs] = dumpContainerCommand();
    const env = Object.fromEntries(dumpContainerEnv('slow', dumps).map((e) => [e.name, e.value]));
    const child = spawn('/bin/sh', [...wrapperArgs, 'sh', '-c', 'echo $$ > ../slow.pid; echo started > part; exec sleep 60'], { env: { PATH: process.env.PATH, ...env }, stdio: 'ignore' });
    const pidFile = path.join(dumps, 'slow.pid');
    while (!fs.existsSync(pidFile) || fs.readFileSync(pidFile, 'utf8').trim() === '') await new Promise((r) => setTimeout(r, 20));
    const dumpPid = Number(fs.readFileSync(pidFile, 'utf8'));
    const started = performance.now();
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(performance.now() - started).toBeLessThan(5000);
    expect(code).not.toBe(0);
    expect(() => process.kill(dumpPid, 0)).toThrow();
    expect(fs.existsSync(path.join(dumps, 'slow.complete'))).toBe(false);
  });

  it('is a POSIX script the chart can embed verbatim (no Helm delimiters, passes sh -n)', () => {
    const script = DUMP_WRAPPER_SCRIPT;
    expect(script).not.toContain('{{');
    expect(script).not.toContain('}}');
    expect(spawnSync('/bin/sh', ['-n', '-c', script]).status).toBe(0);
    expect(spawnSync('busybox', ['sh', '-n', '-c', script]).status).toBe(0);
    expect(dumpContainerCommand()).toEqual(['/bin/sh', '-c', script, 'pvc-backup-dump']);
    expect(dumpContainerEnv('postgres')).toEqual([
      { name: 'PVC_BACKUP_DUMP_NAME', value: 'postgres' },
      { name: 'PVC_BACKUP_DUMP_DIR', value: '/dumps/postgres' },
    ]);
  });
});

describe('checkDumps (the runner side of the contract)', () => {
  it('fails when a dump is missing, incomplete or empty, naming every failing dump in one line', async () => {
    const dumps = await tempDir('dumps');
    expect(runDump(['/bin/sh'], dumps, 'good', ['sh', '-c', 'echo data > all.sql']).code).toBe(0);
    expect(runDump(['/bin/sh'], dumps, 'empty', ['true']).code).toBe(0);
    expect(runDump(['/bin/sh'], dumps, 'zero', ['touch', 'a.sql', 'b.sql']).code).toBe(0);
    fs.mkdirSync(path.join(dumps, 'forged'));
    fs.writeFileSync(path.join(dumps, 'forged/x'), 'x');
    fs.writeFileSync(path.join(dumps, 'forged.complete'), '{"name":"other","startedAt":"a","finishedAt":"b"}');

    expect(checkDumps(dumps, ['good']).map((d) => d.name)).toEqual(['good']);
    const error = failure(() => checkDumps(dumps, ['good', 'empty', 'zero', 'absent', 'forged']));
    expect(error).toBeInstanceOf(OperationError);
    expect((error as OperationError).exitCode).toBe(ExitCode.failed);
    expect(error.message).not.toContain('\n');
    expect(error.message.split('; pre-backup dump ')).toEqual([
      `pre-backup dump "empty" is empty: its command exited 0 but wrote no file into ${dumps}/empty (make it write its output into its working directory, $PVC_BACKUP_DUMP_DIR)`,
      `"zero" is empty: its command exited 0 but wrote only empty files into ${dumps}/zero (make it write its output into its working directory, $PVC_BACKUP_DUMP_DIR)`,
      `"absent" is missing: ${dumps}/absent does not exist (did its init container run, with the scratch volume mounted at ${dumps}?)`,
      `"forged" did not complete: ${dumps}/forged.complete does not describe dump "forged" (written by something other than the dump wrapper); no backup is made`,
    ]);
  });

  it('validates dump names (they become init container names) and refuses duplicates', () => {
    for (const ok of ['postgres', 'db-1', 'a', 'x'.repeat(58)]) expect(() => validateDumpName(ok)).not.toThrow();
    for (const bad of ['', 'Postgres', '-db', 'db-', 'a_b', 'a.b', '../x', 'x'.repeat(59)]) expect(() => validateDumpName(bad)).toThrow(UsageError);
    expect(failure(() => checkDumps('/nonexistent', ['db', 'db'])).message).toBe('dump name "db" is given twice; each dump needs its own name');
    expect(dumpArchivePath('postgres')).toBe(`${DUMPS_ARCHIVE_DIR}/postgres`);
    expect(dumpArchivePath('postgres', 'sub/shop.dump')).toBe('.pvc-backup-dumps/postgres/sub/shop.dump');
  });
});
