//! `unmask`: generate, convert and inspect masked-diffusion models from the command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use unmask::diffusion::{self, Canvas, SampleOptions, Schedule, Strategy};
use unmask::model::gguf::WeightDtype;
use unmask::{Error, Model};

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
    /// Convert a Hugging Face folder (config.json, model.safetensors, tokenizer.json) to GGUF.
    Convert {
        /// The Hugging Face model folder.
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
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// random, confidence or threshold.
    #[arg(long, default_value = "random")]
    strategy: String,
    /// Confidence needed by the threshold strategy.
    #[arg(long, default_value_t = 0.9)]
    threshold: f32,
    /// linear or cosine.
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// Fill masks left to right in blocks of this many tokens.
    #[arg(long)]
    block_length: Option<usize>,
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f32,
    /// 0 turns top-k off.
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the canvas after every step, masks shown as [MASK].
    #[arg(long)]
    show_steps: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Generate(a) => generate(a),
        Cmd::Convert { input, output, dtype, name } => convert(input, output, dtype, name),
        Cmd::Info { model } => info(model),
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
    let strategy: Strategy = a.strategy.parse()?;
    let schedule = match a.schedule.as_str() {
        "linear" => Schedule::Linear,
        "cosine" => Schedule::Cosine,
        s => return Err(Error::options(format!("unknown schedule `{s}` (linear, cosine)"))),
    };
    let opts = SampleOptions {
        steps: a.steps,
        strategy,
        schedule,
        threshold: a.threshold,
        block_length: a.block_length,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
        candidates: 0,
    };
    // Check options before the (slow) model load.
    if a.prompt.is_some() && a.length == 0 {
        return Err(Error::options("length must be at least 1"));
    }
    if a.steps == 0 {
        return Err(Error::options("steps must be at least 1"));
    }
    let model = load(&a.model)?;
    let max = model.config().max_sequence_len();
    let canvas = match (&a.prompt, &a.infill) {
        (Some(p), None) => Canvas::from_prompt(&model.codec, p, a.length, max)?,
        (None, Some(t)) => Canvas::from_template(&model.codec, t, max)?,
        _ => return Err(Error::input("give --prompt or --infill")),
    };
    opts.validate(canvas.masked().len())?;
    let tty = std::io::stdout().is_terminal();
    let bar = if a.show_steps {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::new(opts.steps as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg}").expect("static template"),
        );
        pb
    };
    let mut out = std::io::stdout().lock();
    if a.show_steps {
        let _ = writeln!(out, "step {:>3}/{:<3} │ {}", 0, opts.steps, model.codec.render(&canvas.ids, "[MASK]"));
    }
    let t0 = Instant::now();
    let mut last = Instant::now();
    let outcome = diffusion::generate(&model, canvas, &model.codec.banned_ids(), &opts, |s| {
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
    if !input.is_dir() {
        return Err(Error::model(format!("{} is not a Hugging Face model folder", input.display())));
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
    println!("wrote {} ({:.2} MB, {} tensors)", output.display(), report.bytes as f64 / 1e6, report.tensors.len());
    if fallbacks > 0 {
        println!("note: {fallbacks} matrices kept a finer type (their rows do not split into {dtype:?} blocks)");
    }
    Ok(())
}

fn info(path: PathBuf) -> Result<(), Error> {
    let model = load(&path)?;
    let i = model.info();
    println!("name            {}", i.name);
    println!("model_type      {}", i.model_type);
    println!("parameters      {} ({:.2} M)", i.parameters, i.parameters as f64 / 1e6);
    println!("dtype           {}", i.dtype);
    println!("weights         {:.2} MB", i.weight_bytes as f64 / 1e6);
    println!("vocab           {}", i.vocab_size);
    println!("hidden × layers {} × {} ({} heads)", i.hidden_size, i.layers, i.heads);
    println!("context         {} tokens", i.max_sequence_len);
    println!("tokenizer       {} tokens, mask `{}`", model.codec.vocab_size, model.codec.piece(model.codec.mask_id));
    Ok(())
}
