import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type HttpResponse, HttpError, endpointName, sendWithRetries } from '../http.js';

/**
 * A small client for the Kubernetes API from inside a pod: the API server's address, the pod's
 * service-account token and the cluster CA, nothing else (no kubeconfig, no client library).
 * request(method, path, body) returns the parsed JSON answer or throws a KubeError whose
 * message is one line an operator can act on.
 */

/** Where the kubelet mounts a pod's service-account credentials. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeClientOptions {
  /** `https://host:port` of the API server. */
  apiUrl: string;
  /** Directory holding `token` and `ca.crt` (the service-account mount). */
  credentialsDir: string;
  /** Time each request may take, retries included. */
  timeoutSeconds: number;
  /** Attempts per request (connection failures, 429 and 5xx are retried). */
  attempts?: number;
}

export interface KubeRequestOptions {
  /** Content type of the body; PATCH needs e.g. `application/merge-patch+json`. */
  contentType?: string;
  /** Overrides the client's deadline for this request (ms since the epoch). */
  deadline?: number;
}

/** A Kubernetes API call that did not succeed; `status` is the HTTP status when there was an answer. */
export class KubeError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'KubeError';
  }
}

/** The API server address from the variables the kubelet sets in every pod, if it set them. */
export function inClusterApiUrl(env: Record<string, string | undefined>): string | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host) return undefined;
  return `https://${host.includes(':') ? `[${host}]` : host}${port ? `:${port}` : ''}`;
}

export class KubeClient {
  private readonly api: URL;
  private readonly ca: Buffer;
  private readonly tokenFile: string;

  /** Reads the CA now (it does not change); fails with a KubeError when the credentials are not there. */
  constructor(private readonly options: KubeClientOptions) {
    try {
      this.api = new URL(options.apiUrl);
    } catch {
      throw new KubeError(`the Kubernetes API address "${options.apiUrl}" is not a URL`);
    }
    this.tokenFile = path.join(options.credentialsDir, 'token');
    this.ca = readCredential(path.join(options.credentialsDir, 'ca.crt'), 'cluster CA certificate');
  }

  /** One API call; `apiPath` is absolute (`/apis/events.k8s.io/v1/namespaces/NS/events`). */
  async request<T = unknown>(method: string, apiPath: string, body?: unknown, options: KubeRequestOptions = {}): Promise<T> {
    // Read on every call: the kubelet rotates projected tokens in place.
    const token = readCredential(this.tokenFile, 'service-account token').toString('utf8').trim();
    const url = new URL(apiPath, this.api);
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
    const what = `${method} ${url.pathname}`;
    let response: HttpResponse;
    try {
      response = await sendWithRetries(
        {
          url,
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          ca: this.ca,
          deadline: options.deadline ?? Date.now() + this.options.timeoutSeconds * 1000,
        },
        { attempts: this.options.attempts ?? 3 },
      );
    } catch (error) {
      throw describeFailure(what, endpointName(this.api), error);
    }
    if (response.body.length === 0) return undefined as T;
    try {
      return JSON.parse(response.body.toString('utf8')) as T;
    } catch {
      throw new KubeError(`Kubernetes API ${what} answered ${response.status} with a body that is not JSON`, response.status);
    }
  }
}

function readCredential(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new KubeError(`cannot read the ${what} ${file} (${why}); is the service-account token mounted in this pod?`);
  }
}

interface StatusObject {
  kind?: string;
  message?: string;
  reason?: string;
}

/** Uses the API's own Status message when there is one (`events.events.k8s.io is forbidden: …`). */
function describeFailure(what: string, endpoint: string, error: unknown): KubeError {
  if (!(error instanceof HttpError)) return new KubeError(`Kubernetes API ${what} at ${endpoint} failed: ${(error as Error).message}`);
  const response = error.response;
  if (!response) return new KubeError(`Kubernetes API ${what} at ${endpoint} failed: ${error.message}`);
  let status: StatusObject | undefined;
  try {
    status = JSON.parse(response.body.toString('utf8')) as StatusObject;
  } catch {
    status = undefined;
  }
  if (status?.kind !== 'Status' || !status.message) return new KubeError(`Kubernetes API ${what} failed: ${error.message}`, response.status);
  return new KubeError(`Kubernetes API ${what} answered ${response.status}: ${status.message.split('\n')[0]}`, response.status, status.reason);
}
