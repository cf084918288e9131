import { type HttpResponse, sendWithRetries } from '../http.js';
import type { OutcomeStatus } from './outcome.js';

/**
 * A dead-man's switch in the healthchecks.io style: `URL/start` when a run starts, `URL` when it
 * succeeds, `URL/fail` when it fails. The service alarms when the success ping stops arriving,
 * which catches the one failure no other signal can report: a run that never starts.
 */

export type PingKind = 'start' | 'success' | 'fail';

/** The URL of a ping: the suffix goes on the path, a query string (`?create=1`) stays where it is. */
export function pingUrl(base: URL, kind: PingKind): URL {
  const url = new URL(base.href);
  const path = url.pathname.replace(/\/+$/, '');
  url.pathname = kind === 'success' ? path : `${path}/${kind}`;
  return url;
}

export function pingKindOf(status: OutcomeStatus): PingKind {
  return status === 'failed' ? 'fail' : 'success';
}

/** POSTs a ping; the finishing pings carry the one-line message as their body, which healthchecks.io shows. */
export function sendPing(base: URL, kind: PingKind, message: string | undefined, deadline: number): Promise<HttpResponse> {
  return sendWithRetries(
    {
      url: pingUrl(base, kind),
      method: 'POST',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: message ?? '',
      deadline,
    },
    { attempts: 3 },
  );
}
