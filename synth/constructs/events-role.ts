import type { Construct } from 'constructs';
import { V } from '../values.js';
import { ServiceAccountRole } from './service-account-role.js';

/**
 * What the runner may do with the Kubernetes API: create Events (events.k8s.io), in the release
 * namespace, and nothing else: no get, no list, no other resource.
 */
export class EventsRole extends ServiceAccountRole {
  constructor(scope: Construct, id: string) {
    super(scope, id, { name: V.names.monitoring, rules: [{ apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] }] });
  }
}
