import { expect } from 'vitest';
import type { LedgerState } from './sqlite-ledger.js';

// Apart from sqlite-ledger.ts, which the writer child process loads outside vitest.

/** A consistent ledger: intact, commits 1..N each whole (no gap, no torn row), balances summing to zero. */
export function expectConsistentLedger(ledger: LedgerState): void {
  expect(ledger).toMatchObject({ integrity: ['ok'], badDigests: 0, balanceSum: 0 });
  expect(ledger.commits).toBe(ledger.lastSeq);
  expect(ledger.maxSeq).toBe(ledger.lastSeq);
}
