/**
 * One restore with scale-down in its own process, so a test can SIGKILL it mid-way:
 *   scale-down-child.ts URL TOKEN NAMESPACE STATE_FILE WORKLOADS_JSON hang|ok|fail
 * Logs JSON lines (the runner's logger); the restore itself logs {"event":"restoring"}, then
 * hangs, returns, or fails. Ends with {"event":"finished"} or {"event":"failed",...}.
 */
import { type Workload, withScaledDown } from '../../runner/consistency/scale-down.js';
import { OperationError, RunnerError } from '../../runner/errors.js';
import { createLogger } from '../../runner/log.js';
import { httpKubeClient } from '../helpers/kube-client.js';

const [url, token, namespace, stateFile, workloadsJson, mode] = process.argv.slice(2);
const log = createLogger('json');
try {
  await withScaledDown(
    { client: httpKubeClient(url!, token!), namespace: namespace!, workloads: JSON.parse(workloadsJson!) as Workload[], stateFile: stateFile!, log, pollIntervalMs: 50, timeoutMs: 20_000 },
    async () => {
      log.info('restoring', 'restoring');
      if (mode === 'hang') await new Promise(() => setInterval(() => undefined, 1000));
      if (mode === 'fail') throw new OperationError('no space left on device (/data)');
    },
  );
  log.info('finished', 'finished');
} catch (error) {
  log.error('failed', (error as Error).message, { code: error instanceof RunnerError ? error.code : 'UNEXPECTED' });
  process.exitCode = 1;
}
