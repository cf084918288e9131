import path from 'node:path';
import type { ScaleDownConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { UsageError } from '../errors.js';
import { KubeClient as InClusterClient } from '../kube/client.js';
import { type KubeClient, readScaleState, withScaledDown } from './scale-down.js';

/**
 * restore --scale-down: the restore's work runs with the workloads stopped (withScaledDown),
 * through the pod's own service-account credentials. The replica counts are recorded in DEST,
 * the backup volume, which outlives a killed restore pod; its retry finds them there.
 */

/** The state file in DEST while workloads are scaled down. */
export const SCALE_STATE_FILE = '.pvc-backup-scale-down.json';

/** Each API request may take this long, retries included. */
const REQUEST_TIMEOUT_SECONDS = 30;

/** The in-cluster client as scale-down needs it: JSON merge patches for PATCH. */
function scaleClient(config: ScaleDownConfig): KubeClient {
  if (config.apiUrl === undefined) {
    throw new UsageError('--scale-down needs the Kubernetes API: KUBERNETES_SERVICE_HOST is not set (not in a pod); pass --kube-api URL', 'SCALE_DOWN_CONFIG');
  }
  const client = new InClusterClient({ apiUrl: config.apiUrl, credentialsDir: config.credentialsDir, timeoutSeconds: REQUEST_TIMEOUT_SECONDS });
  return {
    request: (method, apiPath, body) => client.request(method, apiPath, body, method === 'PATCH' ? { contentType: 'application/merge-patch+json' } : {}),
  };
}

/** Runs `work` with the configured workloads scaled to 0, or just runs it when none is configured. */
export async function aroundScaledDown<T>(config: ScaleDownConfig | undefined, dest: string, ctx: RunContext, work: () => Promise<T>): Promise<T> {
  if (config === undefined) return work();
  return withScaledDown(
    {
      client: scaleClient(config),
      namespace: config.namespace,
      workloads: config.workloads,
      stateFile: path.join(dest, SCALE_STATE_FILE),
      log: ctx.log,
      timeoutMs: config.timeoutSeconds * 1000,
      signal: ctx.signal,
    },
    work,
  );
}

/**
 * For a retry that finds its request already done: a restore killed after it recorded the
 * request but before it scaled back left the state file, and this scales back to its counts
 * (the workloads are at 0 then, so nothing is stopped again). Without a state file, nothing.
 */
export async function scaleBackAfterDone(config: ScaleDownConfig | undefined, dest: string, ctx: RunContext): Promise<void> {
  if (config === undefined || readScaleState(path.join(dest, SCALE_STATE_FILE)) === undefined) return;
  ctx.log.warn('scale-down.resume', `the restore was done but the application was not scaled back; scaling back to the counts in ${SCALE_STATE_FILE}`, { stateFile: SCALE_STATE_FILE });
  await aroundScaledDown(config, dest, ctx, async () => undefined);
}
