// The demo's training clock under a time budget, shared with bench/minute.mjs (which
// replays the demo's one-minute run).

/** Seconds between samples under a time budget (a step count samples 5 times instead). */
export const SAMPLE_SECONDS = 15;

/**
 * Seconds between evaluations under a time budget: the candidates Stop keeps from. A fine-tune
 * learns the sample corpus by heart within a few tens of steps, which two threads make in
 * 15 s, so its best weights come between samples.
 */
export const EVAL_SECONDS = 5;
