import type { ApiObject } from 'cdk8s';
import { HelmPlaceholders, setFields, type HelmValue } from '../helm.js';
import { V } from '../values.js';
import { IDENTITY_FILE } from './conditional-parts.js';

/**
 * How a runner pod reaches the off-site bucket and the age keys: the runner's flags for them, and
 * the credentials' variables. Credentials never become flags (the runner takes them only from the
 * AWS SDK's chain); keys never become flags or variables either: recipients are public, and the
 * identity is a mounted file.
 */

/**
 * `--remote URL` and the store's settings. `uploads` adds what only matters when objects are
 * written (storage class, server-side encryption, part limit): backups, and restores whose
 * pre-restore snapshot may go to the bucket.
 */
export function bucketArgs(helm: HelmPlaceholders, uploads: boolean): string[] {
  const offsite = V.offsite;
  return [
    '--remote',
    helm.arg(offsite.url),
    helm.optionalArg('--s3-endpoint', offsite.endpoint),
    helm.optionalArg('--s3-region', offsite.region),
    helm.switchArg('--s3-path-style', offsite.pathStyleOn),
    helm.switchArg('--no-s3-path-style', offsite.pathStyleOff),
    ...(uploads
      ? [
          helm.optionalArg('--s3-storage-class', offsite.storageClass),
          helm.optionalArg('--s3-sse', offsite.sse),
          helm.optionalArg('--s3-sse-kms-key-id', offsite.sseKmsKeyId),
          helm.optionalArg('--s3-max-parts', offsite.maxParts),
        ]
      : []),
  ];
}

/** `--age-recipient KEY` per encryption.recipients entry (backups, and pre-restore snapshots). */
export function recipientArgs(helm: HelmPlaceholders): string[] {
  return [helm.repeatedArg('--age-recipient', V.encryption.recipients)];
}

/** `--age-identity-file` while the identity Secret is mounted (verify and restore pods). */
export function identityArgs(helm: HelmPlaceholders): string[] {
  return [helm.argsWhen(V.encryption.hasIdentity, ['--age-identity-file', IDENTITY_FILE])];
}

/** The bucket credentials' variables in the container at `container` (a JSON pointer) while `when` holds. */
export function templateBucketEnv(apiObject: ApiObject, container: string, when: HelmValue): void {
  const helm = HelmPlaceholders.of(apiObject);
  setFields(apiObject, { [`${container}/env/-`]: helm.appendItems(V.offsite.env(when.expr)) });
}
