import { UsageError } from '../errors.js';
import { type HttpRequest, type HttpResponse, sendWithRetries } from '../http.js';
import type { RunOutcome } from './outcome.js';

/**
 * Notifications: one POST per configured URL, in the format its receiver reads.
 *
 * - `json`: `{event, status, command, prefix, archive, message, …}` for anything generic.
 * - `slack`: an incoming webhook (`{"text": …}`); also Mattermost and Rocket.Chat, which read it.
 * - `ntfy`: the message as the body, with Title, Priority and Tags headers.
 *
 * The format comes from the host (hooks.slack.com, ntfy.sh) or, for self-hosted receivers, from a
 * `slack+` / `ntfy+` / `json+` in front of the scheme (`ntfy+https://ntfy.example.com/backups`).
 */

export type NotifyFormat = 'json' | 'slack' | 'ntfy';

export interface NotifyTarget {
  format: NotifyFormat;
  /** The URL requested (without the format prefix). */
  url: URL;
}

/** Reads one --notify-url; `label` names it in errors, which never repeat the URL (it is a credential). */
export function parseNotifyTarget(text: string, label: string): NotifyTarget {
  const match = /^(slack|ntfy|json)\+(https?:.*)$/i.exec(text.trim());
  let url: URL;
  try {
    url = new URL(match ? match[2]! : text.trim());
  } catch {
    throw new UsageError(`${label} is not a URL (its value is not shown: it may hold a credential)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${label} must be an http(s) URL, optionally as slack+https://, ntfy+https:// or json+https://; got a ${url.protocol} URL`);
  }
  const format = match ? (match[1]!.toLowerCase() as NotifyFormat) : formatOfHost(url.hostname);
  return { format, url };
}

function formatOfHost(host: string): NotifyFormat {
  if (host === 'hooks.slack.com') return 'slack';
  if (host === 'ntfy.sh' || host.endsWith('.ntfy.sh')) return 'ntfy';
  return 'json';
}

export interface NotifyContext {
  namespace: string | undefined;
  claimName: string | undefined;
  hostname: string;
  version: string;
}

/** `backup failed (apps/shop)`: what happened to which prefix, for titles. */
export function notificationTitle(outcome: RunOutcome, context: NotifyContext): string {
  const where = context.namespace ? `${context.namespace}/${outcome.prefix}` : outcome.prefix;
  return `pvc-backup: ${outcome.command} ${outcome.status} (${where})`;
}

/** The generic JSON body. */
export function jsonBody(outcome: RunOutcome, context: NotifyContext): Record<string, unknown> {
  return {
    event: `${outcome.command}.${outcome.status}`,
    status: outcome.status,
    command: outcome.command,
    prefix: outcome.prefix,
    archive: outcome.archive ?? null,
    message: outcome.message,
    exitCode: outcome.exitCode,
    namespace: context.namespace ?? null,
    claim: context.claimName ?? null,
    host: context.hostname,
    startedAt: outcome.startedAt.toISOString(),
    finishedAt: outcome.finishedAt.toISOString(),
    durationSeconds: Math.round((outcome.finishedAt.getTime() - outcome.startedAt.getTime()) / 10) / 100,
    sourceBytes: outcome.sourceBytes ?? null,
    archiveBytes: outcome.archiveBytes ?? null,
    files: outcome.files ?? null,
    runnerVersion: context.version,
  };
}

/** Slack's mrkdwn treats &, < and > as markup. */
function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The request a target gets for an outcome. */
export function notificationRequest(target: NotifyTarget, outcome: RunOutcome, context: NotifyContext, deadline: number): HttpRequest {
  const title = notificationTitle(outcome, context);
  const failed = outcome.status === 'failed';
  switch (target.format) {
    case 'slack': {
      const icon = failed ? ':rotating_light:' : ':white_check_mark:';
      const text = `${icon} *${slackEscape(title)}*\n${slackEscape(outcome.message)}`;
      return { url: target.url, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }), deadline };
    }
    case 'ntfy':
      return {
        url: target.url,
        method: 'POST',
        headers: {
          'content-type': 'text/plain; charset=utf-8',
          title,
          priority: failed ? 'high' : 'default',
          tags: failed ? 'rotating_light' : 'white_check_mark',
        },
        body: outcome.message,
        deadline,
      };
    case 'json':
      return { url: target.url, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(jsonBody(outcome, context)), deadline };
  }
}

export function sendNotification(target: NotifyTarget, outcome: RunOutcome, context: NotifyContext, deadline: number): Promise<HttpResponse> {
  return sendWithRetries(notificationRequest(target, outcome, context, deadline), { attempts: 3 });
}
