//! `unmask`: generate, convert and inspect masked-diffusion models from the command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use unmask::diffusion::{self, Canvas, SampleOptions, Strategy, TrainOptions};
use unmask::options::Flags;
use unmask::model::gguf::WeightDtype;
use unmask::{Error, Model};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "unmask", version, about = "Text generation by masked diffusion with BERT/RoBERTa encoders")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt, or fill the [MASK] spans of a template.
    Generate(GenerateArgs),
    /// Convert a Hugging Face folder (config.json, model.safetensors, tokenizer.json), or re-encode
    /// a GGUF file, to GGUF.
    Convert {
        /// The Hugging Face model folder, or a .gguf file.
        input: PathBuf,
        /// Output .gguf file.
        #[arg(short, long)]
        output: PathBuf,
        /// Weight type: f32, f16, q8_0 or q4_k.
        #[arg(long, default_value = "q8_0")]
        dtype: String,
        /// Name stored in the file (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Train with the diffusion objective: fine-tune a model or start from scratch.
    Train(TrainArgs),
    /// Held-out ELBO perplexity on a corpus, and the unigram entropy of samples per sampler.
    Eval {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long, required = true, num_args = 1..)]
        corpus: Vec<PathBuf>,
        #[arg(long, default_value_t = 64)]
        seq_len: usize,
        /// Windows scored.
        #[arg(long, default_value_t = 32)]
        sequences: usize,
        /// Also judge each sampler's text with this autoregressive GGUF model (`scripts/judge`
        /// fetches one): the first three words of each of the first `--prompts` documents ×
        /// `--seeds` seeds × 48 tokens, against those documents' real text.
        #[arg(long)]
        judge: Option<PathBuf>,
        /// With --judge: only the samplers whose label contains this text (and real text).
        #[arg(long, requires = "judge")]
        only: Option<String>,
        /// With --judge: judge these `generate` options instead of the table's samplers, as a
        /// JSON object over the classic recipe (e.g. '{"strategy":"confidence","steps":48}').
        #[arg(long, requires = "judge", conflicts_with = "only")]
        sampler: Option<String>,
        /// With --judge: documents whose first words are the prompts (and whose text is the reference).
        #[arg(long, requires = "judge", default_value_t = 40)]
        prompts: usize,
        /// With --judge: seeds per prompt.
        #[arg(long, requires = "judge", default_value_t = 5)]
        seeds: u64,
    },
    /// Judge text by an autoregressive GGUF model (e.g. SmolLM2-135M, `scripts/judge` fetches
    /// it): pooled perplexity, word entropy and distinct-2 of the samples, and of the reference.
    Judge {
        /// The judge: a `llama` GGUF file with a byte-level BPE tokenizer.
        #[arg(long)]
        judge: PathBuf,
        /// Samples, one per line.
        #[arg(long)]
        samples: PathBuf,
        /// Real text after the same prompts, one per line.
        #[arg(long)]
        reference: Option<PathBuf>,
    },
    /// Time the encoder, a generation and training steps; prints medians and tokens/s.
    Bench {
        /// A Hugging Face folder or a .gguf file.
        #[arg(short, long)]
        model: PathBuf,
        /// Corpus for the training figures (tiny and small from scratch).
        #[arg(long)]
        corpus: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Inference matmul: `candle` (the native default) or `own` (the SIMD128 kernel wasm uses)
        #[arg(long, default_value = "candle")]
        kernel: String,
    },
    /// Print a model's configuration, storage type and size.
    Info {
        /// A Hugging Face folder or a .gguf file.
        model: PathBuf,
    },
}

#[derive(Args)]
struct GenerateArgs {
    /// A Hugging Face folder or a .gguf file.
    #[arg(short, long)]
    model: PathBuf,
    /// Text to continue (kept fixed).
    #[arg(short, long, conflicts_with = "infill")]
    prompt: Option<String>,
    /// A template with spans to fill: "The [MASK:3] sat on the [MASK]."
    #[arg(long)]
    infill: Option<String>,
    /// Tokens to generate after the prompt.
    #[arg(short = 'n', long, default_value_t = 32)]
    length: usize,
    #[command(flatten)]
    sampling: Flags<SampleOptions>,
    /// Print the canvas after every step, masks shown as [MASK].
    #[arg(long)]
    show_steps: bool,
    /// cpu, or gpu: the WGSL kernels through wgpu on this machine's Vulkan, Metal or DX12
    /// (builds with `--features webgpu`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct TrainArgs {
    /// UTF-8 text files; blank lines separate documents.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Start from a fresh model of this size (tiny ≈ 1M + vocab, small ≈ 3M + vocab).
    #[arg(long, conflicts_with = "init")]
    from_scratch: Option<String>,
    /// Fine-tune this model (Hugging Face folder or .gguf).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Continue the checkpoint in --out: its weights, optimizer moments, step and the batches it
    /// would have drawn next (a LoRA run starts fresh adapters on the merged weights).
    #[arg(long, conflicts_with_all = ["init", "from_scratch"])]
    resume: bool,
    /// Checkpoint folder (Hugging Face layout + trainer state).
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    training: Flags<TrainOptions>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Generate(a) => generate(a),
        Cmd::Convert { input, output, dtype, name } => convert(input, output, dtype, name),
        Cmd::Info { model } => info(model),
        Cmd::Train(a) => train(a),
        Cmd::Bench { model, corpus, repeats, kernel } => match kernel.as_str() {
            "own" | "candle" => bench(model, corpus, repeats, kernel == "own"),
            k => Err(Error::options(format!("--kernel must be own or candle, got `{k}`"))),
        },
        Cmd::Eval { model, corpus, seq_len, sequences, judge, only, sampler, prompts, seeds } => {
            let judged = judge.map(|judge| Judged { judge, only: only.unwrap_or_default(), sampler, prompts, seeds });
            eval(model, corpus, seq_len, sequences, judged)
        }
        Cmd::Judge { judge, samples, reference } => judge_cmd(judge, samples, reference),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb
}

fn load(path: &PathBuf) -> Result<Model, Error> {
    let pb = spinner(&format!("loading {}", path.display()));
    let m = Model::load(path);
    pb.finish_and_clear();
    m
}

fn generate(a: GenerateArgs) -> Result<(), Error> {
    // Check options before the (slow) model load.
    let opts = a.sampling.parse()?;
    if a.prompt.is_some() && a.length == 0 {
        return Err(Error::options("length must be at least 1"));
    }
    if !["cpu", "gpu"].contains(&a.device.as_str()) {
        return Err(Error::options(format!("unknown device `{}` (cpu, gpu)", a.device)));
    }
    if a.device == "gpu" && !cfg!(feature = "webgpu") {
        return Err(Error::Device("this build has no GPU kernels: build it with `--features webgpu`".into()));
    }
    let model = load(&a.model)?;
    #[cfg(feature = "webgpu")]
    let gpu = match a.device.as_str() {
        "gpu" => {
            let g = unmask::backend::webgpu::Gpu::new_blocking()?;
            eprintln!("GPU: {}", g.adapter);
            Some(unmask::model::GpuEncoder::new(g, &model.encoder)?)
        }
        _ => None,
    };
    #[cfg(feature = "webgpu")]
    let denoiser: &dyn diffusion::Denoiser = match &gpu {
        Some(g) => g,
        None => &model,
    };
    #[cfg(not(feature = "webgpu"))]
    let denoiser: &dyn diffusion::Denoiser = &model;
    let max = model.config().max_sequence_len();
    let canvas = match (&a.prompt, &a.infill) {
        (Some(p), None) => Canvas::from_prompt(&model.codec, p, a.length, max)?,
        (None, Some(t)) => Canvas::from_template(&model.codec, t, max)?,
        _ => return Err(Error::input("give --prompt or --infill")),
    };
    let session = diffusion::Session::new(canvas, &model.codec.banned_ids(), &opts)?;
    let tty = std::io::stdout().is_terminal();
    let bar = if a.show_steps {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(session.total() as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg}").expect("static template"),
        );
        pb
    };
    let mut out = std::io::stdout().lock();
    if a.show_steps {
        let _ = writeln!(out, "step {:>3}/{:<3} │ {}", 0, session.total(), model.codec.render(&session.canvas().ids, "[MASK]"));
    }
    let t0 = Instant::now();
    let mut last = Instant::now();
    let outcome = diffusion::run(denoiser, session, |s| {
        if a.show_steps {
            let ms = last.elapsed().as_secs_f64() * 1000.0;
            last = Instant::now();
            let line = model.codec.render(&s.ids, "[MASK]");
            let _ = if tty {
                writeln!(out, "step {:>3}/{:<3} │ {line}   \x1b[2m({} revealed, {ms:.0} ms)\x1b[0m", s.step, s.total, s.revealed.len())
            } else {
                writeln!(out, "step {:>3}/{:<3} │ {line}", s.step, s.total)
            };
        }
        bar.set_length(s.total as u64);
        bar.set_position(s.step as u64);
        bar.set_message(format!("{} masks left", s.masked));
        true
    })?;
    bar.finish_and_clear();
    let text = model.codec.render(&outcome.canvas.ids, "[MASK]");
    if a.show_steps {
        let _ = writeln!(out, "---");
    }
    let _ = writeln!(out, "{text}");
    if tty {
        eprintln!(
            "{} steps in {:.0} ms ({:.1} ms/step)",
            outcome.steps,
            t0.elapsed().as_secs_f64() * 1000.0,
            t0.elapsed().as_secs_f64() * 1000.0 / outcome.steps.max(1) as f64
        );
    }
    Ok(())
}

fn convert(input: PathBuf, output: PathBuf, dtype: String, name: Option<String>) -> Result<(), Error> {
    let dtype: WeightDtype = dtype.parse()?;
    // A GGUF input re-encodes its weights (e.g. q8_0 values as f32, for a reference).
    if !input.is_dir() && input.extension().is_none_or(|e| e != "gguf") {
        return Err(Error::model(format!("{} is neither a Hugging Face model folder nor a .gguf file", input.display())));
    }
    let mut model = load(&input)?;
    if let Some(n) = name {
        model.name = n;
    }
    let pb = spinner(&format!("quantizing to {dtype:?}"));
    // Write next to the target and rename, so a failed conversion never leaves half a file.
    let tmp = output.with_extension("gguf.partial");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let report = model.write_gguf(&mut f, dtype);
    pb.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, &output)?;
    let fallbacks = report
        .tensors
        .iter()
        .filter(|t| t.1.len() == 2 && !t.0.contains("position") && !t.0.contains("token_type"))
        .filter(|t| !t.2.eq_ignore_ascii_case(&format!("{dtype:?}")))
        .count();
    let mut lines = vec![format!("wrote {} ({:.2} MB, {} tensors)", output.display(), report.bytes as f64 / 1e6, report.tensors.len())];
    if fallbacks > 0 {
        lines.push(format!("note: {fallbacks} matrices use a finer type (their rows do not split into {dtype:?} blocks)"));
    }
    print_lines(&lines);
    Ok(())
}

fn info(path: PathBuf) -> Result<(), Error> {
    let model = load(&path)?;
    let i = model.info();
    let lines = [
        format!("name            {}", i.name),
        format!("model_type      {}", i.model_type),
        format!("parameters      {} ({:.2} M)", i.parameters, i.parameters as f64 / 1e6),
        format!("dtype           {}", i.dtype),
        format!("weights         {:.2} MB", i.weight_bytes as f64 / 1e6),
        format!("vocab           {}", i.vocab_size),
        format!("hidden × layers {} × {} ({} heads)", i.hidden_size, i.layers, i.heads),
        format!("context         {} tokens", i.max_sequence_len),
        format!("tokenizer       {} tokens, mask `{}`", model.codec.vocab_size, model.codec.piece(model.codec.mask_id)),
    ];
    print_lines(&lines);
    Ok(())
}

/// Prints to stdout, ending quietly when the reader has gone (`unmask info m | head -2`).
fn print_lines(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            return;
        }
    }
}

fn train(a: TrainArgs) -> Result<(), Error> {
    use unmask::diffusion::corpus::read_documents;
    use unmask::diffusion::Trainer;
    let docs = read_documents(&a.corpus)?;
    let given_steps = a.training.has("steps");
    if !given_steps && !a.training.has("seconds") {
        return Err(Error::options("give --steps or --seconds"));
    }
    let opts = a.training.parse()?.budgeted(given_steps);
    let steps = given_steps.then_some(opts.steps);
    let budget = opts.seconds;
    let mut trainer = if a.resume {
        Trainer::resume(&a.out, &docs)?
    } else if let Some(size) = &a.from_scratch {
        let pb = spinner("training the tokenizer");
        let codec = unmask::model::bpe::train_bpe(&docs, opts.vocab);
        pb.finish_and_clear();
        Trainer::from_scratch(size, codec?, &docs, opts)?
    } else if let Some(init) = &a.init {
        Trainer::new(&load(init)?, &docs, opts)?
    } else {
        return Err(Error::options("give --from-scratch SIZE, --init MODEL or --resume"));
    };
    let c = trainer.corpus();
    eprintln!(
        "{} trained parameters ({}); corpus: {} documents, {} train / {} validation tokens{}",
        trainer.parameter_count(),
        trainer.options.method,
        c.documents,
        c.train.len(),
        c.valid.len(),
        if c.held_out { "" } else { " (one document: validation reuses it)" }
    );
    if a.init.is_some() && !a.resume {
        // The base model's figure, for the fine-tune's to be read against (and, under
        // `--keep best`, the first candidate).
        let e = trainer.evaluate_and_track()?;
        eprintln!("before training: {} ELBO perplexity {:.3}", if e.held_out { "held-out" } else { "training-text" }, e.elbo_perplexity);
    }
    let start_step = trainer.step;
    let target = steps.map(|s| start_step + s);
    let pb = ProgressBar::new(steps.unwrap_or(0) as u64);
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]").expect("static template"));
    let t0 = Instant::now();
    let mut tokens = 0usize;
    // Single-batch losses scatter; the summary reports the mean of the last ten steps.
    let mut recent: std::collections::VecDeque<f32> = Default::default();
    let deadline = budget.map(std::time::Duration::from_secs_f64);
    loop {
        if target.is_some_and(|t| trainer.step >= t) || deadline.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        trainer.set_elapsed(t0.elapsed().as_secs_f64());
        let r = match trainer.step() {
            Ok(r) => r,
            Err(e) => {
                pb.abandon();
                eprintln!("keeping the last checkpoint in {}", a.out.display());
                return Err(e);
            }
        };
        tokens += r.tokens;
        recent.push_back(r.loss);
        if recent.len() > 10 {
            recent.pop_front();
        }
        let tps = tokens as f64 / t0.elapsed().as_secs_f64();
        pb.set_position((trainer.step - start_step) as u64);
        pb.set_message(format!("loss {:.3} lr {:.1e} {tps:.0} tok/s", r.loss, r.lr));
        if pb.is_hidden() && trainer.step % 10 == 0 {
            eprintln!("step {} loss {:.4} objective {:.4} {tps:.0} tok/s", trainer.step, r.loss, r.objective);
        }
        let every = trainer.options.eval_every;
        if every > 0 && trainer.step % every == 0 {
            let e = trainer.evaluate_and_track()?;
            pb.println(format!("step {}: loss {:.3}, held-out ELBO perplexity {:.2}", trainer.step, r.loss, e.elbo_perplexity));
            trainer.save(&a.out)?;
        }
    }
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let e = trainer.evaluate_and_track()?;
    let kept = trainer.keep()?;
    trainer.save(&a.out)?;
    let last_loss = recent.iter().sum::<f32>() / recent.len().max(1) as f32;
    print_lines(&[format!(
        "trained {} steps in {secs:.1} s ({:.0} tok/s): loss {last_loss:.4} (mean of the last {} steps), {} ELBO perplexity {:.3}; saved {}",
        trainer.step - start_step,
        tokens as f64 / secs,
        recent.len(),
        if e.held_out { "held-out" } else { "training-text" },
        e.elbo_perplexity,
        a.out.display()
    )]);
    if let (true, Some(p)) = (kept.step != trainer.step, kept.elbo_perplexity) {
        print_lines(&[format!("{} holds the weights of step {} (--keep best): they scored lowest, ELBO perplexity {p:.3}", a.out.display(), kept.step)]);
    }
    Ok(())
}

fn eval(model: PathBuf, corpus: Vec<PathBuf>, seq_len: usize, sequences: usize, judged: Option<Judged>) -> Result<(), Error> {
    use unmask::diffusion::corpus::{read_documents, unigram_entropy};
    use unmask::diffusion::{TrainOptions, Trainer};
    let docs = read_documents(&corpus)?;
    let m = load(&model)?;
    if let Some(j) = judged {
        return judged_samplers(&m, &docs, &j);
    }
    let opts = TrainOptions { seq_len, valid_fraction: 0.0, eval_sequences: sequences, ..Default::default() };
    let trainer = Trainer::new(&m, &docs, opts)?;
    let e = trainer.evaluate()?;
    print_lines(&[format!(
        "ELBO perplexity  {:.3} (masked CE {:.4} nats over t = 0.1 … 1.0; {} windows of {seq_len} from {} documents, {} tokens)",
        e.elbo_perplexity,
        e.loss,
        sequences,
        trainer.corpus().documents,
        trainer.corpus().valid.len()
    )]);
    // Per word as well as per token, so models with other tokenizers can be compared.
    let words: usize = docs.iter().map(|d| d.split_whitespace().count()).sum();
    let per_word = ((e.elbo_perplexity as f64).ln() * trainer.corpus().valid.len() as f64 / words.max(1) as f64).exp();
    print_lines(&[format!("ELBO perplexity per word {per_word:.1} ({words} words)")]);
    // 20 fixed prompts (the first words of the first documents), 32 tokens each, one seed per
    // prompt; the real text's next 32 tokens are the reference for the unigram entropy.
    let docs20: Vec<&String> = docs.iter().take(20).collect();
    let prompts: Vec<String> = docs20.iter().map(|d| d.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).collect();
    let mut real = Vec::new();
    for d in &docs20 {
        let ids = m.codec.encode(d)?;
        real.extend(ids.iter().copied().filter(|&t| !m.codec.is_special(t)).skip(3).take(32));
    }
    print_lines(&[format!("real text: unigram entropy {:.2} bits ({} tokens after the same prompts)", unigram_entropy(&real), real.len())]);
    let runs: [(Strategy, usize, Option<usize>, f32, &str); 6] = [
        (Strategy::Random, 10, None, 1.0, "random, 10 steps"),
        (Strategy::Confidence, 32, None, 1.0, "confidence, 32 steps"),
        (Strategy::Confidence, 32, Some(8), 1.0, "confidence, 32 steps, blocks of 8"),
        (Strategy::Threshold, 32, None, 1.0, "threshold 0.9, 32 steps"),
        (Strategy::Random, 10, None, 1.3, "random, 10 steps, repetition penalty 1.3"),
        (Strategy::Confidence, 32, None, 1.3, "confidence, 32 steps, repetition penalty 1.3"),
    ];
    for (strategy, steps, block_length, repetition_penalty, label) in runs {
        let (mut all, mut each) = (Vec::new(), 0.0);
        for (i, p) in prompts.iter().enumerate() {
            let canvas = Canvas::from_prompt(&m.codec, p, 32, m.config().max_sequence_len())?;
            let opts = SampleOptions { strategy, steps, block_length, repetition_penalty, prior_penalty: 0.0, seed: i as u64, ..Default::default() };
            let out = diffusion::generate(&m, canvas, &m.codec.banned_ids(), &opts, |_| true)?;
            let toks: Vec<u32> = out.canvas.ids.iter().copied().filter(|&t| !m.codec.is_special(t)).collect();
            each += unigram_entropy(&toks) / prompts.len() as f64;
            all.extend(toks);
        }
        print_lines(&[format!(
            "{label}: unigram entropy of samples {:.2} bits pooled, {each:.2} bits per sample ({} samples, {} tokens)",
            unigram_entropy(&all),
            prompts.len(),
            all.len()
        )]);
    }
    Ok(())
}

/// The samplers the judged table compares, as `generate` options (48 tokens each).
const JUDGED: [(&str, &[(&str, &str)]); 16] = [
    ("random, 10 steps (the classic recipe)", &[("strategy", "random"), ("steps", "10")]),
    ("random, 10 steps, penalty 1.3", &[("strategy", "random"), ("steps", "10"), ("repetitionPenalty", "1.3")]),
    ("random, 48 steps", &[("strategy", "random"), ("steps", "48")]),
    ("confidence, 24 steps, penalty 1.3", &[("strategy", "confidence"), ("steps", "24"), ("repetitionPenalty", "1.3")]),
    ("confidence, 48 steps", &[("strategy", "confidence"), ("steps", "48")]),
    ("confidence, 48 steps, penalty 1.3", &[("strategy", "confidence"), ("steps", "48"), ("repetitionPenalty", "1.3")]),
    ("confidence, 48 steps, penalty 1.5", &[("strategy", "confidence"), ("steps", "48"), ("repetitionPenalty", "1.5")]),
    ("confidence, 48 steps, penalty 1.3, top-p 1", &[("strategy", "confidence"), ("steps", "48"), ("repetitionPenalty", "1.3"), ("topP", "1")]),
    ("confidence, 48 steps, penalty 1.3, redraw 1", &[("strategy", "confidence"), ("steps", "48"), ("repetitionPenalty", "1.3"), ("redraw", "1")]),
    ("confidence, 48 steps, penalty 1.3, redraw 2", &[("strategy", "confidence"), ("steps", "48"), ("repetitionPenalty", "1.3"), ("redraw", "2")]),
    ("confidence, 48 steps, penalty 1.3, prior 0.2 (the defaults)", &[("strategy", "confidence"), ("steps", "48"), ("repetitionPenalty", "1.3"), ("priorPenalty", "0.2")]),
    ("confidence, 48 steps, penalty 1.3, prior 0.3", &[("strategy", "confidence"), ("steps", "48"), ("repetitionPenalty", "1.3"), ("priorPenalty", "0.3")]),
    ("margin, 48 steps", &[("strategy", "margin"), ("steps", "48")]),
    ("entropy, 48 steps", &[("strategy", "entropy"), ("steps", "48")]),
    ("confidence, 48 steps, blocks of 8", &[("strategy", "confidence"), ("steps", "48"), ("blockLength", "8")]),
    ("confidence, 48 steps, blocks of 8, penalty 1.3", &[("strategy", "confidence"), ("steps", "48"), ("blockLength", "8"), ("repetitionPenalty", "1.3")]),
];

/// What `eval --judge` compares.
struct Judged {
    judge: PathBuf,
    only: String,
    /// A JSON object of `generate` options judged instead of the table's rows.
    sampler: Option<String>,
    prompts: usize,
    seeds: u64,
}

/// Judge perplexity, word entropy and distinct-2 per sampler. Prompts are the first three words
/// of the first `prompts` documents, each continued by 48 tokens with every seed. Entropy and
/// distinct-2 depend on how many words are pooled, so they are taken over one seed's samples
/// (one per prompt, as the reference has one text per prompt) and averaged over the seeds; the
/// reference is the same documents lower-cased, cut to the samples' mean word count. The first
/// five samples of each row are printed (the first prompt's seeds, then the next prompt's).
fn judged_samplers(m: &Model, docs: &[String], judged: &Judged) -> Result<(), Error> {
    use unmask::judge::{distinct_n, word_entropy, Judge};
    use unmask::options::OptionSet;
    let Judged { judge, only, sampler, prompts: n_prompts, seeds } = judged;
    if *n_prompts == 0 || *seeds == 0 {
        return Err(Error::input("--prompts and --seeds must be at least 1".to_string()));
    }
    if docs.len() < *n_prompts {
        return Err(Error::input(format!("--prompts {n_prompts} needs as many documents; the corpus has {}", docs.len())));
    }
    let mut j = Judge::load(judge)?;
    let prompts: Vec<String> = docs.iter().take(*n_prompts).map(|d| d.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).collect();
    let mut lines = vec![format!("{:<48} {:>6} {:>8} {:>9} {:>8} {:>6} {:>9}", "sampler", "steps", "judge ppl", "word H", "dist-2", "words", "ms/sample")];
    let mut words_seen = Vec::new();
    let mut shown = Vec::new();
    let rows: Vec<(String, Vec<(String, serde_json::Value)>)> = match sampler {
        Some(json) => {
            let given: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(json).map_err(|e| Error::input(format!("--sampler must be a JSON object of generate options: {e}")))?;
            vec![(format!("--sampler {json}"), given.into_iter().collect())]
        }
        None => JUDGED
            .iter()
            .filter(|(label, _)| label.contains(only.as_str()))
            .map(|(label, given)| {
                let given = given.iter().map(|(k, v)| (k.to_string(), serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::from(*v)))).collect();
                (label.to_string(), given)
            })
            .collect(),
    };
    // Each row is the classic recipe with its own changes, so rows do not move with the defaults.
    let (_, classic) = SampleOptions::presets().into_iter().find(|(name, _)| name.starts_with("classic")).expect("a classic preset");
    for (label, given) in rows {
        let mut row = unmask::options::to_json(&classic);
        for (k, v) in given {
            row[k] = v;
        }
        let row = SampleOptions::from_value(row, &label)?;
        // by_seed[s][p]: prompt p's sample with seed s.
        let mut by_seed: Vec<Vec<String>> = vec![Vec::new(); *seeds as usize];
        let t0 = Instant::now();
        let mut steps = 0;
        for p in &prompts {
            for seed in 0..*seeds {
                let o = SampleOptions { seed, ..row.clone() };
                let c = Canvas::from_prompt(&m.codec, p, 48, m.config().max_sequence_len())?;
                let out = diffusion::generate(m, c, &m.codec.banned_ids(), &o, |_| true)?;
                steps = out.steps;
                by_seed[seed as usize].push(m.codec.render(&out.canvas.ids, "[MASK]"));
            }
        }
        let all: Vec<String> = (0..prompts.len()).flat_map(|p| by_seed.iter().map(move |s| s[p].clone())).collect();
        let ms = t0.elapsed().as_secs_f64() * 1000.0 / all.len() as f64;
        let words = all.iter().map(|t| t.split_whitespace().count()).sum::<usize>() as f64 / all.len() as f64;
        words_seen.push(words);
        let ppl = j.perplexity(&all)?;
        let mean = |f: &dyn Fn(&[String]) -> f64| by_seed.iter().map(|s| f(s)).sum::<f64>() / by_seed.len() as f64;
        lines.push(format!(
            "{label:<48} {steps:>6} {ppl:>9.1} {:>8.2} {:>6.3} {words:>6.1} {ms:>9.0}",
            mean(&|s| word_entropy(s)),
            mean(&|s| distinct_n(s, 2))
        ));
        // Rows as they come: a judged table takes minutes.
        eprintln!("{}", lines.last().expect("just pushed"));
        shown.push(format!("{label}:"));
        shown.extend(all.iter().take(5).map(|t| format!("  {t}")));
    }
    let n = (words_seen.iter().sum::<f64>() / words_seen.len().max(1) as f64).round() as usize;
    let real: Vec<String> = docs.iter().take(*n_prompts).map(|d| d.to_lowercase().split_whitespace().take(n).collect::<Vec<_>>().join(" ")).collect();
    let ppl = j.perplexity(&real)?;
    let label = format!("real text (first {n_prompts} documents, lower-cased)");
    lines.push(format!("{label:<48} {:>6} {ppl:>9.1} {:>8.2} {:>6.3} {n:>6} {:>9}", "-", word_entropy(&real), distinct_n(&real, 2), "-"));
    lines.push(String::new());
    lines.extend(shown);
    print_lines(&lines);
    Ok(())
}

fn judge_cmd(judge: PathBuf, samples: PathBuf, reference: Option<PathBuf>) -> Result<(), Error> {
    use unmask::judge::{distinct_n, word_entropy, Judge};
    let lines = |p: &PathBuf| -> Result<Vec<String>, Error> {
        let text = std::fs::read_to_string(p).map_err(|e| Error::input(format!("cannot read {}: {e}", p.display())))?;
        let v: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if v.is_empty() {
            return Err(Error::input(format!("{} has no samples (one per line)", p.display())));
        }
        Ok(v)
    };
    let pb = spinner(&format!("loading {}", judge.display()));
    let j = Judge::load(&judge);
    pb.finish_and_clear();
    let mut j = j?;
    let mut out = Vec::new();
    for (label, path) in std::iter::once(("samples", &samples)).chain(reference.as_ref().map(|r| ("reference", r))) {
        let texts = lines(path)?;
        let t0 = Instant::now();
        let ppl = j.perplexity(&texts)?;
        out.push(format!(
            "{label:<9} judge perplexity {ppl:8.2}  word entropy {:.2} bits  distinct-2 {:.3}  ({} lines, {:.1} s)",
            word_entropy(&texts),
            distinct_n(&texts, 2),
            texts.len(),
            t0.elapsed().as_secs_f64()
        ));
    }
    print_lines(&out);
    Ok(())
}

fn median_ms(mut f: impl FnMut() -> Result<(), Error>, repeats: usize) -> Result<f64, Error> {
    f()?; // warm-up
    let mut t = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn bench(model: PathBuf, corpus: Option<PathBuf>, repeats: usize, own_gemm: bool) -> Result<(), Error> {
    use unmask::diffusion::corpus::read_documents;
    use unmask::diffusion::{TrainOptions, Trainer};
    let mut m = load(&model)?;
    m.encoder.kernels.own_gemm = own_gemm;
    let max = m.config().max_sequence_len();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let kernel = if own_gemm { "own SIMD128-style" } else { "candle" };
    let mut lines = vec![format!("model {} ({}), threads: {threads}, matmul: {kernel}", m.name, m.info().dtype)];
    for len in [64usize, 128, 256].into_iter().filter(|&l| l <= max) {
        let ids: Vec<u32> = (0..len as u32).map(|i| 1000 + i % 500).map(|i| i % m.config().vocab_size as u32).collect();
        let all: Vec<usize> = (0..len).collect();
        let ms = median_ms(|| m.logits_at(&ids, &all).map(|_| ()), repeats)?;
        lines.push(format!("forward {len:>3} tokens (all logits)   {ms:8.1} ms"));
    }
    let gen_len = 256.min(max - 8);
    let ms = median_ms(
        || {
            let c = Canvas::from_prompt(&m.codec, "the", gen_len, max)?;
            // Ten forwards, as the figures in bench/RESULTS.md were taken (no prior's forward).
            let o = SampleOptions { steps: 10, prior_penalty: 0.0, ..Default::default() };
            diffusion::generate(&m, c, &m.codec.banned_ids(), &o, |_| true).map(|_| ())
        },
        repeats.min(3),
    )?;
    lines.push(format!("generate {gen_len} tokens, 10 steps        {ms:8.1} ms"));
    if let Some(c) = corpus {
        let docs = read_documents(&[c])?;
        for size in ["tiny", "small"] {
            let codec = unmask::model::bpe::train_bpe(&docs, 1024)?;
            let opts = TrainOptions { seq_len: 64, batch_size: 16, ..Default::default() };
            let mut t = Trainer::from_scratch(size, codec, &docs, opts)?;
            t.step()?;
            let t0 = Instant::now();
            let mut tokens = 0;
            for _ in 0..5 {
                tokens += t.step()?.tokens;
            }
            let tps = tokens as f64 / t0.elapsed().as_secs_f64();
            lines.push(format!("train {size:<5} ({:.2} M params)       {tps:8.0} tok/s", t.parameter_count() as f64 / 1e6));
        }
    }
    print_lines(&lines);
    Ok(())
}
