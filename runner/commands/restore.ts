import type { RestoreConfig } from '../config.js';
import type { RunContext } from '../context.js';
import { OperationError } from '../errors.js';

export async function runRestore(_config: RestoreConfig, _ctx: RunContext): Promise<void> {
  throw new OperationError('restore is being built', 'NOT_YET');
}
