// Crash recovery under load (crash.mjs): writers pipeline actions, the
// daemon is SIGKILLed at a seeded random moment, restarted on the same data
// directory, the writers resend what was not acked; every ack must survive,
// nothing is applied twice, seqs have no gaps, checksums chain.
// The seed is fixed so a failure can be replayed; set MOVEXD_CRASH_SEED to
// try others (the seed is in every failure message).
import { test } from 'node:test';
import { runCrashCycles } from './crash.mjs';
import { SLOW } from './lib.mjs';

const SEED = process.env.MOVEXD_CRASH_SEED !== undefined ? Number(process.env.MOVEXD_CRASH_SEED) : 20240611;
// ~1 s per cycle (release and ASan alike: mostly fsync and restarts);
// requests time out individually, so a hang fails fast.
const LIMIT = 90000 * SLOW;

test(`crash cycles: 24 x SIGKILL under pipelined writers, fsync always (seed ${SEED})`, { timeout: LIMIT }, async (t) => {
  const st = await runCrashCycles({ cycles: 24, seed: SEED, fsync: 'always' });
  t.diagnostic(`fsync always: ${JSON.stringify(st)}`);
});

// A process crash loses nothing that was written under any policy
// (docs/STORAGE.md): the same checks hold for everysec and no.
for (const fsync of ['everysec', 'no']) {
  test(`crash cycles: 8 x SIGKILL, fsync ${fsync} (seed ${SEED + 1})`, { timeout: LIMIT }, async (t) => {
    const st = await runCrashCycles({ cycles: 8, seed: SEED + 1, fsync });
    t.diagnostic(`fsync ${fsync}: ${JSON.stringify(st)}`);
  });
}
