import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';

/**
 * Real servers on 127.0.0.1 for the monitoring tests: a recording HTTP(S) receiver (webhooks,
 * pings, a stand-in Kubernetes API), the Debian Prometheus Pushgateway, and a throwaway CA made
 * with openssl. Every server listens on a free port chosen at run time and is stopped by the
 * test's teardown (servers by close(), processes by their PID).
 */

export interface ReceivedRequest {
  method: string;
  /** Path and query, as the request line had them. */
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  at: number;
}

/** How the receiver answers one request: a status (and body), never (the connection stays open), or by dropping the connection. */
export type Answer = { status: number; body?: string; headers?: Record<string, string> } | 'hang' | 'drop';

export interface Receiver {
  /** `http://127.0.0.1:PORT` (https for a TLS receiver). */
  url: string;
  requests: ReceivedRequest[];
  /** Resolves once `count` requests have arrived; rejects after `timeoutMs`. */
  waitForRequests(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

export interface ReceiverOptions {
  /** Answers each request in turn; the default answers 200 with an empty JSON object. */
  answer?: (request: ReceivedRequest, index: number) => Answer;
  tls?: { key: string | Buffer; cert: string | Buffer };
}

/** Starts a receiver that records every request and answers as told. */
export async function startReceiver(options: ReceiverOptions = {}): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const sockets = new Set<net.Socket>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received: ReceivedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks), at: Date.now() };
      const index = requests.push(received) - 1;
      const answer = options.answer?.(received, index) ?? { status: 200, body: '{}', headers: { 'content-type': 'application/json' } };
      if (answer === 'hang') return;
      if (answer === 'drop') return req.socket.destroy();
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body ?? '');
    });
  };
  const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler) : http.createServer(handler);
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // TLS connections are tracked through their underlying sockets too.
  server.on('secureConnection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    requests,
    async waitForRequests(count, timeoutMs = 10_000) {
      const end = Date.now() + timeoutMs;
      while (requests.length < count) {
        if (Date.now() > end) throw new Error(`expected ${count} requests, got ${requests.length}: ${requests.map((r) => `${r.method} ${r.url}`).join(', ')}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return requests;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nobody listens on (bound and released again), for "dead endpoint" cases. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------- TLS

export interface TestCertificates {
  dir: string;
  /** PEM of the CA that signed the server certificate. */
  caCert: string;
  serverKey: string;
  serverCert: string;
}

/** A CA and a server certificate for 127.0.0.1 signed by it (EC P-256, valid for a day), made with openssl in `dir`. */
export function makeCertificates(dir: string, name = 'test'): TestCertificates {
  const file = (n: string) => path.join(dir, `${name}-${n}`);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '1', '-subj', `/CN=${name} CA`);
  openssl('req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1');
  fs.writeFileSync(file('san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file('server.crt'), '-days', '1', '-extfile', file('san.cnf'));
  const read = (n: string) => fs.readFileSync(file(n), 'utf8');
  return { dir, caCert: read('ca.crt'), serverKey: read('server.key'), serverCert: read('server.crt') };
}

// ---------------------------------------------------------------- Pushgateway

export interface Pushgateway {
  url: string;
  process: ChildProcess;
  /** Scrapes /metrics and returns the samples whose names start with `pvc_backup_`. */
  scrape(): Promise<Sample[]>;
  stop(): Promise<void>;
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export const PUSHGATEWAY_BINARY = '/usr/bin/prometheus-pushgateway';

/** Starts the Debian Pushgateway on a free port of 127.0.0.1 (no persistence); waits until it is ready. */
export async function startPushgateway(): Promise<Pushgateway> {
  for (let attempt = 1; ; attempt++) {
    const port = await closedPort();
    const log: Buffer[] = [];
    // No persistence: Debian's default file (/var/lib/prometheus/pushgateway.data) is shared by the whole machine.
    const child = spawn(PUSHGATEWAY_BINARY, [`--web.listen-address=127.0.0.1:${port}`, '--persistence.file='], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => log.push(c));
    child.stderr!.on('data', (c: Buffer) => log.push(c));
    const url = `http://127.0.0.1:${port}`;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    };
    try {
      await waitUntilReady(`${url}/-/ready`, child, () => Buffer.concat(log).toString());
      return { url, process: child, stop, scrape: () => scrape(`${url}/metrics`) };
    } catch (error) {
      await stop();
      // Another process may have taken the port between choosing and binding it.
      if (attempt >= 3) throw error;
    }
  }
}

async function waitUntilReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus-pushgateway exited with ${child.exitCode}: ${log()}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > end) throw new Error(`prometheus-pushgateway did not become ready: ${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function scrape(url: string): Promise<Sample[]> {
  const text = await (await fetch(url)).text();
  return parseExposition(text).filter((s) => s.name.startsWith('pvc_backup_'));
}

/** Parses the Prometheus text format (enough of it for the Pushgateway's own output). */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[name!] = value!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

