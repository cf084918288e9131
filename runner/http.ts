import type http from 'node:http';
import type https from 'node:https';

/**
 * One bounded HTTP(S) exchange, and the retry loop around it. Used for everything the runner
 * sends out (metrics, Kubernetes API calls, webhooks, pings): a request never outlives its
 * deadline, whatever the other end does (no answer, a slow body, a stalled TLS handshake).
 */

export interface HttpRequest {
  url: URL;
  method: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** PEM certificates trusted instead of the system's (the Kubernetes API's CA). */
  ca?: string | Buffer;
  /** Absolute time (ms since the epoch) by which the exchange must be over, connection included. */
  deadline: number;
}

export interface HttpResponse {
  status: number;
  statusText: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A request that got no usable answer; `retryable` when trying again may help. */
export class HttpError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly response?: HttpResponse,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Bodies beyond this are cut off: the runner only ever reads short answers. */
const MAX_BODY_BYTES = 1024 * 1024;

/** `scheme://host[:port]`: how an endpoint is named in logs. Paths, queries and user info can hold secrets. */
export function endpointName(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

/**
 * node:http and node:https, loaded on the first request: loading them costs every run of the CLI
 * a noticeable part of its start-up, and most runs send nothing.
 */
async function transportFor(url: URL): Promise<Pick<typeof https, 'request'>> {
  // node:http takes the same options; it ignores the TLS ones (ca).
  return url.protocol === 'https:' ? await import('node:https') : ((await import('node:http')) as Pick<typeof https, 'request'>);
}

/** Sends one request and resolves with any HTTP status; rejects (HttpError) when there is no answer in time. */
export async function httpRequest(request: HttpRequest): Promise<HttpResponse> {
  const { url } = request;
  const headers: Record<string, string> = { ...request.headers };
  // Credentials in the URL (https://user:token@host/) become a Basic header; the request line never carries them.
  if (url.username || url.password) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.authorization ??= `Basic ${Buffer.from(credentials).toString('base64')}`;
  }
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  if (body) headers['content-length'] = String(body.length);
  const transport = await transportFor(url);
  const remaining = request.deadline - Date.now();
  if (remaining <= 0) throw new HttpError('no time left to send it', false);

  return new Promise((resolve, reject) => {
    const req = transport.request(
      {
        protocol: url.protocol,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || undefined,
        path: `${url.pathname}${url.search}`,
        method: request.method,
        headers,
        ca: request.ca,
        // One connection per request, closed afterwards: nothing is left open to keep the process alive.
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size < MAX_BODY_BYTES) chunks.push(chunk);
          size += chunk.length;
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on('error', (error) => fail(error));
      },
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      reject(error instanceof HttpError ? error : new HttpError(describeNetworkError(error), isRetryableNetworkError(error)));
    };
    const timer = setTimeout(() => req.destroy(new HttpError(`no answer within ${formatSeconds(remaining)}`, false)), remaining);
    req.on('error', fail);
    req.end(body);
  });
}

export interface RetryOptions {
  /** Most attempts, the first included. */
  attempts: number;
  /** Pause before the second attempt; doubled for each further one. */
  backoffMs?: number;
}

/**
 * Sends a request until it gets a 2xx answer, retrying connection failures, 408, 429 and 5xx
 * while attempts and time remain; every attempt shares the one deadline. Resolves with the 2xx
 * response; rejects with an HttpError that says what the last attempt got.
 */
export async function sendWithRetries(request: HttpRequest, options: RetryOptions): Promise<HttpResponse> {
  let pause = options.backoffMs ?? 250;
  let last: HttpError | undefined;
  for (let attempt = 1; attempt <= options.attempts; attempt++) {
    if (attempt > 1) {
      if (Date.now() + pause >= request.deadline) break;
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause *= 2;
    }
    try {
      const response = await httpRequest(request);
      if (response.status >= 200 && response.status < 300) return response;
      last = new HttpError(describeStatus(response), isRetryableStatus(response.status), response);
    } catch (error) {
      last = error instanceof HttpError ? error : new HttpError(describeNetworkError(error as Error), false);
    }
    if (!last.retryable) break;
  }
  throw last ?? new HttpError('no time left to send it', false);
}

function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** `HTTP 503 Service Unavailable: <first line of the body>`, at most 200 characters of body. */
export function describeStatus(response: HttpResponse): string {
  const text = response.body.toString('utf8').trim().split('\n')[0]?.slice(0, 200) ?? '';
  return `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}${text ? `: ${text}` : ''}`;
}

const RETRYABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND']);

function isRetryableNetworkError(error: Error): boolean {
  return RETRYABLE_CODES.has((error as NodeJS.ErrnoException).code ?? '');
}

function describeNetworkError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found';
    case 'ECONNRESET':
      return 'connection reset';
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `TLS certificate not trusted (${code})`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'TLS certificate is for another host name';
    default:
      return code ? `${error.message} (${code})` : error.message;
  }
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10}s`;
}
