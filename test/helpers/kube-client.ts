import type { KubeClient } from '../../runner/consistency/scale-down.js';

type Json = Record<string, unknown>;

/**
 * A minimal client for KubeClient over plain HTTP with a bearer token, for the tests only (in
 * the cluster the runner's own in-cluster client is used). No vitest import: child processes use it too.
 */
export function httpKubeClient(baseUrl: string, token: string): KubeClient {
  return {
    async request(method, path, body) {
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/merge-patch+json' } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      const json = text ? (JSON.parse(text) as Json) : undefined;
      if (!response.ok) {
        const error = new Error(typeof json?.message === 'string' ? json.message : `HTTP ${response.status}`) as Error & { status: number };
        error.status = response.status;
        throw error;
      }
      return json;
    },
  };
}
