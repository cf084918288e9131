import { readFileSync } from 'node:fs';
import os from 'node:os';
import { runBackup } from './commands/backup.js';
import { runCat } from './commands/cat.js';
import { runList } from './commands/list.js';
import { runPrune } from './commands/prune.js';
import { runRestore } from './commands/restore.js';
import { runVerify } from './commands/verify.js';
import { type MonitoringConfig, type RunnerConfig, helpText, isMonitored, monitoringOfRefusedRun, parseCommandLine } from './config.js';
import { Cleanup, type RunContext } from './context.js';
import { ExitCode, RunnerError, describeSystemError, errorCodeOf, exitCodeOf } from './errors.js';
import { type Logger, createLogger } from './log.js';
import { tuneRuntimeOnce } from './memory.js';
import { favourMainThread } from './threads.js';
import { Monitor } from './monitoring/monitor.js';
import { type CommandResult, failed, succeeded } from './monitoring/outcome.js';

/** The runner's version: the package version, read once at start. */
function runnerVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

async function dispatch(config: RunnerConfig, ctx: RunContext): Promise<CommandResult> {
  switch (config.command) {
    case 'backup':
      return { command: 'backup', summary: await runBackup(config, ctx) };
    case 'verify':
      return { command: 'verify', outcomes: await runVerify(config, ctx) };
    case 'list':
      await runList(config, ctx.log, (line) => process.stdout.write(line + '\n'));
      return { command: 'list' };
    case 'prune':
      await runPrune(config, ctx.log, (text) => process.stdout.write(text + '\n'));
      return { command: 'prune' };
    case 'restore':
      return { command: 'restore', summary: await runRestore(config, ctx) };
    case 'cat':
      await runCat(config, ctx, process.stdout);
      return { command: 'cat' };
  }
}

/** How long a run stopped by a signal may spend reporting it (the pod's grace period is 30 s). */
const STOPPED_REPORT_SECONDS = 3;
/** How long a run stopped by a signal waits for its network cleanup (AbortMultipartUpload, the bucket lock). */
const STOPPED_ABORT_MS = 10_000;

function newMonitor(monitoring: MonitoringConfig | undefined, dest: string | undefined, log: Logger): Monitor {
  return new Monitor(monitoring, { dest, hostname: os.hostname(), version: runnerVersion() }, log);
}

/** A refused command line still reports its failure where the run would have reported (see monitoringOfRefusedRun). */
async function reportRefused(argv: string[], message: string, started: Date): Promise<void> {
  const refused = monitoringOfRefusedRun(argv, process.env);
  if (!refused) return;
  const monitor = newMonitor(refused.monitoring, undefined, createLogger(refused.logFormat));
  await monitor.finish(failed(refused.command, refused.prefix, ExitCode.usage, message, { startedAt: started, finishedAt: new Date() }));
}

/** Parses once, runs one command, maps the outcome to the contract's exit codes. */
export async function main(argv: string[]): Promise<number> {
  const started = new Date();
  let parsed;
  try {
    parsed = parseCommandLine(argv, process.env);
  } catch (error) {
    process.stderr.write(`pvc-backup: ${(error as Error).message}\n`);
    await reportRefused(argv, (error as Error).message, started);
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
  const streaming = config.command === 'backup' || config.command === 'verify' || config.command === 'restore' || config.command === 'cat';
  if (streaming) {
    tuneRuntimeOnce();
    await favourMainThread();
  }
  // With a JSON document on stdout, log lines go to stderr so that stdout stays parseable.
  // cat writes the file's bytes to stdout: its log lines always go to stderr.
  const log = ((config.command === 'prune' || config.command === 'list') && config.json) || config.command === 'cat' ? createLogger(config.logFormat, (line) => process.stderr.write(line + '\n')) : createLogger(config.logFormat);
  const cleanup = new Cleanup();
  const abort = new AbortController();
  const ctx: RunContext = { log, cleanup, signal: abort.signal, now: () => new Date(), version: runnerVersion() };
  const monitor = newMonitor(parsed.monitoring, config.dest, log);
  const times = () => ({ startedAt: started, finishedAt: new Date() });
  /** Reports a failed or stopped run (list and prune report nothing). */
  const reportFailure = async (code: number, message: string, budgetSeconds?: number) => {
    if (isMonitored(config.command)) await monitor.finish(failed(config.command, config.prefix, code, message, times()), { budgetSeconds });
  };
  let stopping = false;

  const onSignal = (signal: NodeJS.Signals) => {
    stopping = true;
    abort.abort();
    const failures = cleanup.runAll();
    for (const f of failures) log.error('cleanup.failed', `could not ${f.label}: ${describeSystemError(f.error)}`);
    const message = `${config.command} stopped by ${signal}; partial files and the lock were removed`;
    const finish = () => {
      log.error('stopped', message, { signal });
      // Without anywhere to report to, the process ends right here, as it always has.
      if (!monitor.active) return dieBy(signal);
      void reportFailure(signal === 'SIGINT' ? 130 : 143, message, STOPPED_REPORT_SECONDS).finally(() => dieBy(signal));
    };
    if (cleanup.asyncSize === 0) return finish();
    // A bucket upload in flight: abort it (nothing may stay visible or billed) before dying.
    void cleanup.runAllAsync(STOPPED_ABORT_MS).then((late) => {
      for (const f of late) log.error('cleanup.failed', `could not ${f.label}: ${describeSystemError(f.error)}`);
      finish();
    });
  };
  const dieBy = (signal: NodeJS.Signals) => {
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

  monitor.start();
  try {
    const result = await dispatch(config, ctx);
    const outcome = succeeded(config, result, times());
    if (outcome) await monitor.finish(outcome);
    return ExitCode.ok;
  } catch (error) {
    // A signal's handler has cleaned up, logged and reported already, and ends the process.
    if (stopping) return 143;
    const failures = cleanup.runAll();
    for (const f of failures) log.error('cleanup.failed', `could not ${f.label}: ${describeSystemError(f.error)}`);
    const code = exitCodeOf(error);
    const message = error instanceof RunnerError ? error.message : `${config.command} failed: ${describeSystemError(error)}`;
    log.error(`${config.command}.failed`, message, { exitCode: code, code: errorCodeOf(error) });
    await reportFailure(code, message);
    return code;
  }
}

