//! Invariants of the denoising loop, for every strategy, with a mock denoiser and with a real
//! fixture model.

mod common;

use common::{fixture, Mock};
use unmask::diffusion::{generate, Canvas, SampleOptions, Schedule, Step, Strategy};
use unmask::Model;

const MASK: u32 = 99;

fn canvas(prompt: usize, gen: usize) -> Canvas {
    let mut ids = vec![0u32];
    ids.extend((0..prompt as u32).map(|i| 10 + i));
    ids.extend(std::iter::repeat(MASK).take(gen));
    ids.push(2);
    let fixed = ids.iter().map(|&i| i != MASK).collect();
    Canvas::new(ids, fixed, MASK).unwrap()
}

fn run(c: Canvas, opts: &SampleOptions) -> (Vec<Step>, Canvas) {
    let mut steps = Vec::new();
    let out = generate(&Mock { vocab: 100 }, c, &[0, 1, 2, MASK], opts, |s| {
        steps.push(s.clone());
        true
    })
    .unwrap();
    assert!(!out.stopped);
    (steps, out.canvas)
}

fn all_options() -> Vec<SampleOptions> {
    let mut v = Vec::new();
    for &strategy in Strategy::ALL {
        for block_length in [None, Some(7)] {
            for schedule in [Schedule::Linear, Schedule::Cosine] {
                v.push(SampleOptions { strategy, block_length, schedule, steps: 10, seed: 5, ..Default::default() });
            }
        }
    }
    v
}

#[test]
fn invariants_hold_for_every_strategy() {
    for opts in all_options() {
        let start = canvas(4, 24);
        let (steps, end) = run(start.clone(), &opts);
        assert!(!steps.is_empty() && steps.len() <= steps[0].total, "{opts:?}");
        let mut prev = start.clone();
        let mut prev_masked = start.masked().len();
        for s in &steps {
            // Fixed positions never change.
            for i in 0..start.ids.len() {
                if start.fixed[i] {
                    assert_eq!(s.ids[i], start.ids[i]);
                }
            }
            // Masks only go down, every step reveals at least one, and revealed tokens stay.
            let masked = s.ids.iter().filter(|&&t| t == MASK).count();
            assert_eq!(masked, s.masked);
            assert!(masked < prev_masked, "{opts:?}");
            assert_eq!(prev_masked - masked, s.revealed.len());
            for i in 0..s.ids.len() {
                if prev.ids[i] != MASK {
                    assert_eq!(s.ids[i], prev.ids[i]);
                }
            }
            for &p in &s.revealed {
                assert_eq!(prev.ids[p], MASK);
                assert!(![0, 1, 2, MASK].contains(&s.ids[p]), "banned id sampled");
            }
            assert!(s.confidence.iter().all(|c| *c > 0.0 && *c <= 1.0));
            prev_masked = masked;
            prev.ids = s.ids.clone();
        }
        assert!(steps.last().unwrap().done);
        assert!(end.masked().is_empty());
        if opts.strategy != Strategy::Threshold {
            assert_eq!(steps.len(), 10, "{opts:?}");
        }
    }
}

#[test]
fn the_linear_schedule_reveals_an_equal_share_each_step() {
    let opts = SampleOptions { steps: 10, ..Default::default() };
    let (steps, _) = run(canvas(3, 40), &opts);
    let counts: Vec<usize> = steps.iter().map(|s| s.revealed.len()).collect();
    assert_eq!(counts, vec![4; 10]);
}

#[test]
fn blocks_fill_left_to_right() {
    let opts = SampleOptions { steps: 8, block_length: Some(8), strategy: Strategy::Confidence, ..Default::default() };
    let c = canvas(2, 32);
    let masked = c.masked();
    let (steps, _) = run(c, &opts);
    // 4 blocks × 2 steps; step k only touches block k / 2.
    assert_eq!(steps.len(), 8);
    for (k, s) in steps.iter().enumerate() {
        let block = &masked[(k / 2) * 8..(k / 2) * 8 + 8];
        assert!(s.revealed.iter().all(|p| block.contains(p)), "step {k}");
    }
}

#[test]
fn same_seed_same_text_other_seed_other_text() {
    for opts in all_options() {
        let a = run(canvas(4, 24), &opts).1;
        let b = run(canvas(4, 24), &opts).1;
        assert_eq!(a, b, "{opts:?}");
    }
    let o1 = SampleOptions { seed: 1, ..Default::default() };
    let o2 = SampleOptions { seed: 2, ..Default::default() };
    assert_ne!(run(canvas(4, 24), &o1).1, run(canvas(4, 24), &o2).1);
}

#[test]
fn the_callback_can_stop_generation() {
    let mut seen = 0;
    let out = generate(&Mock { vocab: 100 }, canvas(2, 20), &[MASK], &SampleOptions::default(), |_| {
        seen += 1;
        seen < 3
    })
    .unwrap();
    assert!(out.stopped);
    assert_eq!(out.steps, 3);
    assert_eq!(seen, 3);
    assert!(!out.canvas.masked().is_empty());
}

#[test]
fn threshold_commits_everything_that_is_sure() {
    // Threshold 0.01: every proposal qualifies, so one step finishes.
    let opts = SampleOptions { strategy: Strategy::Threshold, threshold: 0.01, top_k: 1, ..Default::default() };
    let (steps, end) = run(canvas(2, 20), &opts);
    assert_eq!(steps.len(), 1);
    assert!(end.masked().is_empty());
}

#[test]
fn bad_options_are_errors() {
    let cases = [
        SampleOptions { steps: 0, ..Default::default() },
        SampleOptions { temperature: 0.0, ..Default::default() },
        SampleOptions { temperature: f32::NAN, ..Default::default() },
        SampleOptions { top_p: 0.0, ..Default::default() },
        SampleOptions { top_p: 1.5, ..Default::default() },
        SampleOptions { threshold: 0.0, ..Default::default() },
        SampleOptions { block_length: Some(0), ..Default::default() },
    ];
    for o in cases {
        let r = generate(&Mock { vocab: 100 }, canvas(2, 20), &[MASK], &o, |_| true);
        let e = r.expect_err(&format!("{o:?} accepted"));
        assert!(matches!(e, unmask::Error::Options(_)), "{e}");
    }
}

#[test]
fn a_real_model_generates_and_infills() {
    let model = Model::load(&fixture("roberta-prelayernorm")).unwrap();
    let max = model.config().max_sequence_len();
    let start = Canvas::from_template(&model.codec, "The [MASK:3] sat on the [MASK].", max).unwrap();
    assert_eq!(start.masked().len(), 4);
    let opts = SampleOptions { steps: 4, strategy: Strategy::Confidence, candidates: 3, ..Default::default() };
    let mut n = 0;
    let out = generate(&model, start.clone(), &model.codec.banned_ids(), &opts, |s| {
        n += 1;
        assert_eq!(s.candidates.len(), s.revealed.len());
        true
    })
    .unwrap();
    assert_eq!(n, 4);
    for i in 0..start.ids.len() {
        if start.fixed[i] {
            assert_eq!(out.canvas.ids[i], start.ids[i]);
        } else {
            assert!(!model.codec.is_special(out.canvas.ids[i]));
        }
    }
    let text = model.codec.render(&out.canvas.ids, "[MASK]");
    assert!(text.starts_with("The") && text.contains(" sat on the"), "{text}");

    // Editing in place: re-mask one generated token; only it may change.
    let mut edit = out.canvas.clone();
    let p = start.masked()[1];
    edit.remask(&[p]).unwrap();
    let again = generate(&model, edit, &model.codec.banned_ids(), &SampleOptions { steps: 1, seed: 9, ..Default::default() }, |_| true).unwrap();
    for i in 0..start.ids.len() {
        if i != p {
            assert_eq!(again.canvas.ids[i], out.canvas.ids[i]);
        }
    }
}

#[test]
fn prompts_are_checked_against_the_context() {
    let model = Model::load(&fixture("roberta")).unwrap();
    let max = model.config().max_sequence_len();
    assert!(Canvas::from_prompt(&model.codec, "", 8, max).is_err());
    assert!(Canvas::from_prompt(&model.codec, "   ", 8, max).is_err());
    assert!(Canvas::from_prompt(&model.codec, "The cat", 0, max).is_err());
    let long = "the cat sat on the mat ".repeat(40);
    let e = Canvas::from_prompt(&model.codec, &long, 8, max).unwrap_err().to_string();
    assert!(e.contains("context"), "{e}");
    assert!(Canvas::from_prompt(&model.codec, "The cat", max, max).is_err());
    let c = Canvas::from_prompt(&model.codec, "The cat", 10, max).unwrap();
    assert_eq!(c.masked().len(), 10);
    let mut c2 = c.clone();
    let tok = model.codec.encode(" dog").unwrap();
    c2.pin(c.masked()[3], &tok).unwrap();
    assert_eq!(c2.masked().len(), 10 - tok.len());
    assert!(c2.pin(0, &tok).is_err());
}

#[test]
fn the_repetition_penalty_keeps_a_one_token_model_from_filling_the_canvas_with_it() {
    // A model that prefers token 50 everywhere by a margin of 1 nat over 51..53: greedy
    // confidence decoding writes 50 in every position; with a penalty of 3 a seen 50 (logit
    // 4 → 1.33) ranks below the unseen alternatives (3.0), so the canvas has more than one id.
    struct OneToken;
    impl unmask::diffusion::Denoiser for OneToken {
        fn vocab_size(&self) -> usize {
            100
        }
        fn logits(&self, _: &[u32], positions: &[usize]) -> unmask::Result<Vec<f32>> {
            let row: Vec<f32> = (0..100).map(|v| match v { 50 => 4.0, 51..=53 => 3.0, _ => 0.0 }).collect();
            Ok(positions.iter().flat_map(|_| row.clone()).collect())
        }
    }
    let gen = |repetition_penalty| {
        let opts = SampleOptions { strategy: Strategy::Confidence, steps: 12, top_k: 1, repetition_penalty, ..Default::default() };
        let out = generate(&OneToken, canvas(2, 12), &[0, 1, 2, MASK], &opts, |_| true).unwrap();
        let mut made: Vec<u32> = out.canvas.ids[3..15].to_vec();
        made.sort_unstable();
        made.dedup();
        made
    };
    assert_eq!(gen(1.0), [50]);
    let varied = gen(3.0);
    assert!(varied.len() > 1 && varied.contains(&50), "{varied:?}");
}

#[test]
fn more_steps_than_masks_is_one_token_per_step() {
    for &strategy in Strategy::ALL {
        for block_length in [None, Some(2)] {
            let opts = SampleOptions { steps: 10, strategy, block_length, top_k: 1, ..Default::default() };
            let (steps, end) = run(canvas(2, 4), &opts);
            assert!(end.masked().is_empty());
            assert_eq!(steps[0].total, 4, "{opts:?}: the step total says the clamped number");
            if strategy != Strategy::Threshold {
                assert_eq!(steps.len(), 4, "{opts:?}");
                assert!(steps.iter().all(|s| s.revealed.len() == 1), "{opts:?}");
            }
        }
    }
    // An explicit 0 stays an error.
    let err = unmask::diffusion::Session::new(canvas(2, 4), &[], &SampleOptions { steps: 0, ..Default::default() });
    assert!(matches!(err, Err(unmask::Error::Options(m)) if m.contains("steps")));
}

/// `redraw`: in the middle half of the steps the least confident committed tokens (never those
/// just revealed, never fixed ones) are masked again, the schedule still ends on a full canvas
/// in the planned steps, and off by default.
#[test]
fn redraw_masks_the_least_confident_tokens_again_in_the_middle_half_and_still_finishes() {
    for &strategy in Strategy::ALL {
        let opts = SampleOptions { strategy, steps: 12, redraw: 2, seed: 3, ..Default::default() };
        let start = canvas(3, 24);
        let (steps, end) = run(start.clone(), &opts);
        assert!(end.masked().is_empty() && steps.last().unwrap().done, "{strategy:?}");
        if strategy != Strategy::Threshold {
            assert_eq!(steps.len(), 12, "{strategy:?}");
        }
        let mut conf = std::collections::HashMap::new();
        let mut prev = start.ids.clone();
        for (k, s) in steps.iter().enumerate() {
            let before: Vec<usize> = conf.keys().copied().collect();
            for (&p, &c) in s.revealed.iter().zip(&s.confidence) {
                conf.insert(p, c);
            }
            // Steps 3..9 of 12 (the middle half) redraw two each.
            assert_eq!(s.redrawn.len(), if (3..9).contains(&k) { 2 } else { 0 }, "{strategy:?} step {k}");
            let mut eligible: Vec<usize> = before.into_iter().filter(|p| prev[*p] != MASK && !s.revealed.contains(p)).collect();
            eligible.sort_by(|a, b| conf[a].total_cmp(&conf[b]).then(a.cmp(b)));
            let mut want: Vec<usize> = eligible.into_iter().take(s.redrawn.len()).collect();
            want.sort_unstable();
            assert_eq!(s.redrawn, want, "{strategy:?} step {k}: the least confident committed tokens");
            for &p in &s.redrawn {
                assert_eq!(s.ids[p], MASK);
                assert!(!start.fixed[p]);
                conf.remove(&p);
            }
            assert_eq!(s.masked, s.ids.iter().filter(|&&t| t == MASK).count());
            prev = s.ids.clone();
        }
    }
    let (steps, _) = run(canvas(3, 24), &SampleOptions { steps: 12, ..Default::default() });
    assert!(steps.iter().all(|s| s.redrawn.is_empty()), "off by default");
}

#[test]
fn the_prior_penalty_takes_what_the_model_always_says_out_of_its_choices() {
    // A model that says the same whatever the context: 50 by a margin of 1 nat over 51..53,
    // and those by 5 nats over the rest.
    // Its prior is that distribution, so a penalty of 1 leaves every allowed id equally
    // likely; the prior costs one forward per generation, and the device ranker is not used.
    struct Deaf(std::cell::Cell<usize>);
    impl unmask::diffusion::Denoiser for Deaf {
        fn vocab_size(&self) -> usize {
            100
        }
        fn logits(&self, _: &[u32], positions: &[usize]) -> unmask::Result<Vec<f32>> {
            self.0.set(self.0.get() + 1);
            let row: Vec<f32> = (0..100).map(|v| match v { 50 => 4.0, 51..=53 => 3.0, _ => -2.0 }).collect();
            Ok(positions.iter().flat_map(|_| row.clone()).collect())
        }
    }
    let gen = |prior_penalty| {
        let opts = SampleOptions { steps: 12, top_p: 1.0, top_k: 0, repetition_penalty: 1.0, prior_penalty, ..Default::default() };
        let model = Deaf(Default::default());
        let out = generate(&model, canvas(2, 24), &[0, 1, 2, MASK], &opts, |_| true).unwrap();
        assert_eq!(model.0.get(), 12 + usize::from(prior_penalty > 0.0));
        let mut made: Vec<u32> = out.canvas.ids[3..27].to_vec();
        let fifties = made.iter().filter(|&&t| t == 50).count();
        made.sort_unstable();
        made.dedup();
        (fifties, made.len())
    };
    // Without it, 50 has p ≈ 0.43 and 51..53 0.16 each: 24 draws are mostly those four.
    let (fifties, distinct) = gen(0.0);
    assert!(fifties >= 5 && distinct < 12, "{fifties} fifties, {distinct} distinct");
    // With it, 96 ids are equally likely: 24 draws are mostly different and rarely 50.
    let (fifties, distinct) = gen(1.0);
    assert!(fifties <= 2 && distinct >= 16, "{fifties} fifties, {distinct} distinct");
    let c = canvas(2, 8);
    for (prior_penalty, ranks) in [(0.0, Some(50)), (0.2, None)] {
        let s = unmask::diffusion::Session::new(c.clone(), &[0, 1, 2, MASK], &SampleOptions { prior_penalty, ..Default::default() }).unwrap();
        assert_eq!(s.ranked_k(), ranks);
    }
}
