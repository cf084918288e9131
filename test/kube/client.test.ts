import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, KubeError, inClusterApiUrl } from '../../runner/kube/client.js';
import { type Receiver, makeCertificates, startReceiver } from '../helpers/servers.js';
import { useTempDirs } from '../helpers/tree.js';

/**
 * The in-cluster API client on its own, against a local HTTPS server with a throwaway CA: the
 * calls a later feature needs beside creating Events (GET, PATCH of a subresource), the token
 * read afresh for every call (the kubelet rotates it), and the API's Status as the error line.
 */

const tempDir = useTempDirs('file');
let api: Receiver;
let credentials: string;
let client: KubeClient;

beforeAll(async () => {
  const certs = makeCertificates(await tempDir('kube-tls'), 'kube');
  credentials = await tempDir('kube-sa');
  fs.writeFileSync(path.join(credentials, 'ca.crt'), certs.caCert);
  fs.writeFileSync(path.join(credentials, 'token'), 'first-token');
  api = await startReceiver({
    tls: { key: certs.serverKey, cert: certs.serverCert },
    answer: (request) => {
      if (request.url.startsWith('/apis/apps/v1/namespaces/apps/deployments/missing')) {
        const status = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'deployments.apps "missing" not found' };
        return { status: 404, body: JSON.stringify(status), headers: { 'content-type': 'application/json' } };
      }
      const scale = { kind: 'Scale', apiVersion: 'autoscaling/v1', spec: { replicas: request.method === 'PATCH' ? 0 : 2 } };
      return { status: 200, body: JSON.stringify(scale), headers: { 'content-type': 'application/json' } };
    },
  });
  client = new KubeClient({ apiUrl: api.url, credentialsDir: credentials, timeoutSeconds: 5 });
});
afterAll(async () => {
  await api?.close();
});

describe('the Kubernetes API client', () => {
  it('GETs and PATCHes with the bearer token, reading the token afresh for each call', async () => {
    const scale = await client.request<{ spec: { replicas: number } }>('GET', '/apis/apps/v1/namespaces/apps/deployments/shop/scale');
    expect(scale.spec.replicas).toBe(2);
    fs.writeFileSync(path.join(credentials, 'token'), 'rotated-token\n');
    const patched = await client.request<{ spec: { replicas: number } }>('PATCH', '/apis/apps/v1/namespaces/apps/deployments/shop/scale', { spec: { replicas: 0 } }, {
      contentType: 'application/merge-patch+json',
    });
    expect(patched.spec.replicas).toBe(0);
    const [get, patch] = api.requests.slice(-2);
    expect(get!.headers.authorization).toBe('Bearer first-token');
    expect(get!.headers.accept).toBe('application/json');
    expect(get!.body.length).toBe(0);
    expect(patch!.headers.authorization).toBe('Bearer rotated-token');
    expect(patch!.headers['content-type']).toBe('application/merge-patch+json');
    expect(JSON.parse(patch!.body.toString('utf8'))).toEqual({ spec: { replicas: 0 } });
  });

  it("turns the API's Status into one line, keeping the HTTP status and reason", async () => {
    const failure = await client.request('GET', '/apis/apps/v1/namespaces/apps/deployments/missing/scale').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(KubeError);
    expect(failure).toMatchObject({
      status: 404,
      reason: 'NotFound',
      message: 'Kubernetes API GET /apis/apps/v1/namespaces/apps/deployments/missing/scale answered 404: deployments.apps "missing" not found',
    });
  });

  it('finds the API server from the variables the kubelet sets', () => {
    expect(inClusterApiUrl({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' })).toBe('https://10.96.0.1:443');
    expect(inClusterApiUrl({ KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '443' })).toBe('https://[fd00:10:96::1]:443');
    expect(inClusterApiUrl({})).toBeUndefined();
  });
});
