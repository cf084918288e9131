#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { runBackup } from './commands/backup.js';
import { runList } from './commands/list.js';
import { runPrune } from './commands/prune.js';
import { runRestore } from './commands/restore.js';
import { runVerify } from './commands/verify.js';
import { type RunnerConfig, helpText, parseCommandLine } from './config.js';
import { Cleanup, type RunContext } from './context.js';
import { ExitCode, RunnerError, describeSystemError, exitCodeOf } from './errors.js';
import { createLogger } from './log.js';
import { tuneAllocatorOnce } from './memory.js';

/** The runner's version: the package version, read once at start. */
function runnerVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

async function dispatch(config: RunnerConfig, ctx: RunContext): Promise<void> {
  switch (config.command) {
    case 'backup':
      await runBackup(config, ctx);
      return;
    case 'verify':
      await runVerify(config, ctx);
      return;
    case 'list':
      await runList(config, ctx.log, (line) => process.stdout.write(line + '\n'));
      return;
    case 'prune':
      await runPrune(config, ctx.log);
      return;
    case 'restore':
      await runRestore(config, ctx);
      return;
  }
}

/** Entry point: parse once, run one command, map the outcome to the contract's exit codes. */
async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(argv, process.env);
  } catch (error) {
    process.stderr.write(`pvc-backup: ${(error as Error).message}\n`);
    return exitCodeOf(error);
  }
  if (parsed.kind === 'help') {
    process.stdout.write(helpText(parsed.command) + '\n');
    return ExitCode.ok;
  }
  if (parsed.kind === 'version') {
    process.stdout.write(runnerVersion() + '\n');
    return ExitCode.ok;
  }
  const { config } = parsed;
  if (config.command === 'backup' || config.command === 'verify' || config.command === 'restore') tuneAllocatorOnce();
  const log = createLogger(config.logFormat);
  const cleanup = new Cleanup();
  const abort = new AbortController();
  const ctx: RunContext = { log, cleanup, signal: abort.signal, now: () => new Date(), version: runnerVersion() };

  const onSignal = (signal: NodeJS.Signals) => {
    abort.abort();
    const failures = cleanup.runAll();
    for (const f of failures) log.error('cleanup.failed', `could not ${f.label}: ${describeSystemError(f.error)}`);
    log.error('stopped', `${config.command} stopped by ${signal}; partial files and the lock were removed`, { signal });
    // Die by the signal itself (exit status 128+n, 143 for SIGTERM): process.exit() would first
    // wait for the compression jobs still running on the thread pool (seconds each at high zstd
    // levels). The 'exit' listeners (e.g. a held lock's release) run first, as they would on
    // process.exit(). With no signal listener left, Node restores the default action, so the
    // kill ends the process at once. As PID 1 of a container the kernel ignores a signal the
    // process sends itself; then it exits normally with the same status.
    const code = signal === 'SIGINT' ? 130 : 143;
    process.exitCode = code;
    process.emit('exit', code);
    process.removeAllListeners('SIGTERM');
    process.removeAllListeners('SIGINT');
    process.kill(process.pid, signal);
    process.exit(code);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  try {
    await dispatch(config, ctx);
    return ExitCode.ok;
  } catch (error) {
    const failures = cleanup.runAll();
    for (const f of failures) log.error('cleanup.failed', `could not ${f.label}: ${describeSystemError(f.error)}`);
    const code = exitCodeOf(error);
    const message = error instanceof RunnerError ? error.message : `${config.command} failed: ${describeSystemError(error)}`;
    log.error(`${config.command}.failed`, message, { exitCode: code, code: error instanceof RunnerError ? error.code : (error as NodeJS.ErrnoException)?.code });
    return code;
  }
}

process.exitCode = await main(process.argv.slice(2));
