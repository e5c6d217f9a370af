//! The WebGPU backend's ops ([`Pass`], one forward recorded into one compute pass) and the
//! weights they read, uploaded from the CPU backend's.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use candle_core::quantized::GgmlDType;
use candle_core::Tensor;

use super::kernels::{self, act};
use super::{Gpu, Recorder};
use crate::backend::cpu;
use crate::backend::rank::{Ranked, Scoring, MAX_RANKED};
use crate::backend::{Activation, Ops};
use crate::error::{Error, Result};

/// A linear layer on the GPU.
pub struct GpuLinear {
    /// f32 weights, or a one-float placeholder when `q8` holds them.
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    /// q8_0 weights as stored in the file: packed int8 quants and per-32 scales.
    q8: Option<(wgpu::Buffer, wgpu::Buffer)>,
    out: usize,
    inp: usize,
}

impl GpuLinear {
    /// Uploads `l`: q8_0 blocks in their quantized form (4× less GPU memory and bandwidth),
    /// anything else as f32.
    pub fn upload(gpu: &Gpu, l: &cpu::Linear, label: &str) -> Result<Self> {
        let (out, inp) = l.dims;
        let b = match &l.bias {
            Some(b) => data(b)?,
            None => vec![0.0; out],
        };
        Ok(match q8_blocks(l, inp)? {
            Some((quants, scales)) => GpuLinear {
                w: gpu.upload(label, &[]),
                b: gpu.upload(label, &b),
                q8: Some((gpu.upload_u32(label, &quants), gpu.upload(label, &scales))),
                out,
                inp,
            },
            None => GpuLinear { w: gpu.upload(label, &data(l.weight()?)?), b: gpu.upload(label, &b), q8: None, out, inp },
        })
    }

    /// Held as q8_0 blocks.
    pub fn quantized(&self) -> bool {
        self.q8.is_some()
    }
}

/// The q8_0 blocks of a linear, repacked for the GPU: int8 quants four to a u32 and one f32
/// scale per block of 32 (GGUF's 34-byte blocks are not 4-byte aligned).
fn q8_blocks(l: &cpu::Linear, k: usize) -> Result<Option<(Vec<u32>, Vec<f32>)>> {
    let Some(q) = l.blocks() else { return Ok(None) };
    if q.dtype() != GgmlDType::Q8_0 || k % 32 != 0 {
        return Ok(None);
    }
    let raw = q.data()?;
    let mut quants = Vec::with_capacity(raw.len() / 34 * 8);
    let mut scales = Vec::with_capacity(raw.len() / 34);
    for block in raw.chunks_exact(34) {
        scales.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
        quants.extend(block[2..].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    }
    Ok(Some((quants, scales)))
}

/// A layer norm's parameters on the GPU.
pub struct GpuNorm {
    g: wgpu::Buffer,
    b: wgpu::Buffer,
    eps: f32,
}

impl GpuNorm {
    pub fn upload(gpu: &Gpu, n: &cpu::Norm, label: &str) -> Result<Self> {
        Ok(Self { g: gpu.upload(label, &data(&n.weight)?), b: gpu.upload(label, &data(&n.bias)?), eps: n.eps as f32 })
    }
}

/// Embedding tables on the GPU.
pub struct GpuEmbeddings {
    word: wgpu::Buffer,
    pos: wgpu::Buffer,
    tt: wgpu::Buffer,
    hidden: usize,
}

impl GpuEmbeddings {
    pub fn upload(gpu: &Gpu, e: &cpu::Embeddings) -> Result<Self> {
        let hidden = e.word.dim(1)?;
        let tt = match &e.token_type {
            Some(t) => data(t)?,
            None => vec![0.0; hidden],
        };
        Ok(Self {
            word: gpu.upload("word embeddings", &data(&e.word)?),
            pos: gpu.upload("position embeddings", &data(&e.position)?),
            tt: gpu.upload("token type", &tt),
            hidden,
        })
    }
}

/// Activations on the GPU: `rows` rows of `width` f32 (one sequence).
#[derive(Clone)]
pub struct Rows {
    pub buf: wgpu::Buffer,
    pub rows: usize,
    pub width: usize,
}

/// Workgroups a matmul should reach before its `k` is split: about one per SM of a large
/// GPU (an H100 has 132).
pub const SPLIT_TARGET: usize = 128;

/// The split-K target for an adapter: none on software adapters (lavapipe, SwiftShader: the
/// partial sums only add memory traffic there, ~10 % slower on lavapipe), fewer workgroups
/// on integrated GPUs (fewer compute units), [`SPLIT_TARGET`] otherwise.
fn split_target(kind: wgpu::DeviceType) -> usize {
    match kind {
        wgpu::DeviceType::Cpu => 0,
        wgpu::DeviceType::IntegratedGpu => SPLIT_TARGET / 4,
        _ => SPLIT_TARGET,
    }
}

/// How to split a matmul of `tiles` 64 × 64 output tiles along `k`: `(length, splits)`, or
/// None when it has enough tiles already or `k` is too short to be worth slicing (every
/// slice keeps at least `min_slice` of `k`, a multiple of the kernel's 16).
pub fn split_k(tiles: u32, k: usize, target: usize, min_slice: usize) -> Option<(usize, usize)> {
    let want = (target / tiles.max(1) as usize).min(k / min_slice).min(8);
    if want < 2 {
        return None;
    }
    let len = k.div_ceil(want).div_ceil(16) * 16;
    let splits = k.div_ceil(len);
    (splits > 1).then_some((len, splits))
}

fn data(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn act_code(a: Option<Activation>) -> u32 {
    match a {
        None => act::NONE,
        Some(Activation::Gelu) => act::GELU,
        Some(Activation::GeluTanh) => act::GELU_TANH,
        Some(Activation::Relu) => act::RELU,
    }
}

/// A device with the state forwards share: the scratch-buffer pool and the split-K setting.
pub struct GpuOps {
    pub gpu: Gpu,
    /// Scratch buffers by byte size: a forward takes them here and returns them after its
    /// readback, so the steps of a generation (same length) allocate nothing new.
    pool: RefCell<HashMap<u64, Vec<wgpu::Buffer>>>,
    in_use: RefCell<Vec<wgpu::Buffer>>,
    dummy: wgpu::Buffer,
    dummy_u32: wgpu::Buffer,
    split: Cell<(usize, usize)>,
}

impl GpuOps {
    pub fn new(gpu: Gpu) -> Self {
        Self {
            pool: RefCell::default(),
            in_use: RefCell::default(),
            dummy: gpu.upload("unused", &[]),
            dummy_u32: gpu.upload_u32("unused", &[]),
            split: Cell::new((split_target(gpu.device_type), 128)),
            gpu,
        }
    }

    /// A new recording of launches (one forward, one submission).
    pub fn pass(&self) -> Pass<'_> {
        self.recycle();
        Pass { ops: self, rec: self.gpu.encoder() }
    }

    /// A scratch buffer of `floats` f32, from the pool when one of that size is free.
    fn scratch(&self, label: &str, floats: usize) -> wgpu::Buffer {
        let size = (floats.max(1) * 4) as u64;
        let reused = self.pool.borrow_mut().get_mut(&size).and_then(|v| v.pop());
        let b = reused.unwrap_or_else(|| self.gpu.scratch(label, floats));
        self.in_use.borrow_mut().push(b.clone());
        b
    }

    /// Returns the scratch buffers of a finished (or failed) forward to the pool.
    fn recycle(&self) {
        let mut pool = self.pool.borrow_mut();
        for b in self.in_use.borrow_mut().drain(..) {
            pool.entry(b.size()).or_default().push(b);
        }
    }

    /// Scratch buffers held by the pool (for tests: steps of one length reuse them).
    pub fn pooled_buffers(&self) -> usize {
        self.pool.borrow().values().map(Vec::len).sum()
    }

    /// Sets how many workgroups a matmul should reach before it is split along `k` (0: never
    /// split), and the shortest slice of `k` a split may make. The defaults ([`SPLIT_TARGET`],
    /// 128) suit a large discrete GPU; benchmarks compare settings, tests force splits on
    /// the small fixtures.
    pub fn set_split(&self, workgroups: usize, min_slice: usize) {
        self.split.set((workgroups, min_slice.max(16)));
    }
}

/// The `k` the GPU ranks rows of width `vocab` with for `s` (its `k` clamped to the width), or
/// why the `top_k` kernel cannot serve `s`.
pub fn ranked_k(s: &Scoring, vocab: usize) -> Result<usize> {
    let k = s.k.min(vocab);
    let (t, pen) = (s.temperature, s.repetition_penalty);
    if !(1..=MAX_RANKED).contains(&k) || !(t > 0.0 && t.is_finite()) || !(pen > 0.0 && pen.is_finite()) {
        return Err(Error::options(format!("GPU ranking takes 1 ≤ k ≤ {MAX_RANKED}, a temperature > 0 and a penalty > 0")));
    }
    Ok(k)
}

/// One forward being recorded: the [`Ops`] of the GPU. Nothing runs until [`Pass::read`] or
/// [`Pass::rank`] submits the recording.
pub struct Pass<'a> {
    ops: &'a GpuOps,
    rec: Recorder,
}

impl Pass<'_> {
    fn scratch(&self, label: &str, floats: usize) -> wgpu::Buffer {
        self.ops.scratch(label, floats)
    }

    /// Uploads the row indices `rows`.
    fn upload_u32(&self, label: &str, v: &[u32]) -> wgpu::Buffer {
        self.ops.gpu.upload_u32(label, v)
    }

    /// Runs the recording and reads `x` back (row-major).
    pub async fn read(self, x: &Rows) -> Result<Vec<f32>> {
        let out = self.ops.gpu.read(self.rec, &x.buf, x.rows * x.width).await;
        self.ops.recycle();
        out
    }

    /// Runs the recording and ranks the rows of `logits` on the GPU ([`kernels::TopK`]):
    /// per row the top `k` allowed ids by temperature-scaled logit (repetition penalty
    /// applied), their scaled logits and the log-normaliser; `2k + 1` words per row come
    /// back instead of the row. `k` is clamped to the width.
    pub async fn rank(mut self, logits: &Rows, s: &Scoring) -> Result<Ranked> {
        let (rows, vocab) = (logits.rows, logits.width);
        let k = ranked_k(s, vocab)?;
        let (t, pen) = (s.temperature, s.repetition_penalty);
        if rows == 0 {
            return Ok(Ranked { k, ..Default::default() });
        }
        let g = &self.ops.gpu;
        if pen != 1.0 && !s.seen.is_empty() {
            let seen = g.upload_u32("seen", &s.seen);
            let n = rows * s.seen.len();
            let params = kernels::Penalize { rows: rows as u32, vocab: vocab as u32, seen: s.seen.len() as u32, penalty: pen };
            g.dispatch(&mut self.rec, params, &[&logits.buf, &seen], Gpu::groups_for(n));
        }
        let stride = 2 * k + 1;
        let top = self.scratch("top k", rows * stride);
        let ban = g.upload_u32("banned", &s.banned);
        let params = kernels::TopK { rows: rows as u32, vocab: vocab as u32, k: k as u32, inv_temperature: 1.0 / t, banned: s.banned.len() as u32 };
        g.dispatch(&mut self.rec, params, &[&logits.buf, &ban, &top], Gpu::groups_for_rows(rows));
        let words = g.read(self.rec, &top, rows * stride).await;
        self.ops.recycle();
        let words: Vec<u32> = words?.iter().map(|v| v.to_bits()).collect();
        match Ranked::from_words(&words, k) {
            Some(r) if r.check(rows, vocab) => Ok(r),
            _ => Err(Error::Device("the GPU returned an invalid ranking".into())),
        }
    }
}

impl Ops for Pass<'_> {
    type X = Rows;
    type Linear = GpuLinear;
    type Norm = GpuNorm;
    type Embeddings = GpuEmbeddings;

    fn embed(&mut self, e: &GpuEmbeddings, ids: &[u32], batch: usize, offset: usize) -> Result<Rows> {
        if batch != 1 {
            return Err(Error::Device("the GPU forward takes one sequence".into()));
        }
        let (t, h) = (ids.len(), e.hidden);
        let ids_buf = self.upload_u32("ids", ids);
        let out = self.scratch("embeddings", t * h);
        let params = kernels::Embed { tokens: t as u32, width: h as u32, position_offset: offset as u32 };
        self.ops.gpu.dispatch(&mut self.rec, params, &[&ids_buf, &e.word, &e.pos, &e.tt, &out], Gpu::groups_for(t * h));
        Ok(Rows { buf: out, rows: t, width: h })
    }

    fn linear(&mut self, l: &GpuLinear, x: &Rows, act: Option<Activation>) -> Result<Rows> {
        let rows = x.rows;
        let out = self.scratch("linear out", rows * l.out);
        let tiles = (l.out.div_ceil(64) as u32, rows.div_ceil(64) as u32);
        // Unused bindings get the placeholder buffers (every binding must be bound).
        let (wq, ws8) = match &l.q8 {
            Some((q, s)) => (q, s),
            None => (&self.ops.dummy_u32, &self.ops.dummy),
        };
        let (target, min_slice) = self.ops.split.get();
        let split = split_k(tiles.0 * tiles.1, l.inp, target, min_slice);
        let mm = kernels::Matmul { m: rows as u32, n: l.out as u32, k: l.inp as u32, k_slice: 0, has_bias: 1, act: act_code(act), q8: l.q8.is_some() as u32 };
        let (g, rec, x) = (&self.ops.gpu, &mut self.rec, &x.buf);
        match split {
            None => g.dispatch(rec, mm, &[x, &l.w, &l.b, &out, wq, ws8], tiles),
            Some((len, splits)) => {
                let part = self.ops.scratch("partial sums", splits * rows * l.out);
                g.dispatch(rec, kernels::Matmul { k_slice: len as u32, ..mm }, &[x, &l.w, &l.b, &part, wq, ws8], (tiles.0, tiles.1, splits as u32));
                let len = rows * l.out;
                let sum = kernels::SplitSum { len: len as u32, n: mm.n, splits: splits as u32, has_bias: mm.has_bias, act: mm.act };
                g.dispatch(rec, sum, &[&part, &l.b, &out], Gpu::groups_for(len));
            }
        }
        Ok(Rows { buf: out, rows, width: l.out })
    }

    fn add_norm(&mut self, n: &GpuNorm, x: &Rows, residual: Option<&Rows>) -> Result<Rows> {
        Ok(self.norm(n, x, residual, false).0)
    }

    fn add_norm_keep(&mut self, n: &GpuNorm, x: &Rows, residual: &Rows) -> Result<(Rows, Rows)> {
        let (y, s) = self.norm(n, x, Some(residual), true);
        Ok((y, s.expect("kept residual")))
    }

    fn add(&mut self, a: &Rows, b: &Rows) -> Result<Rows> {
        let n = a.rows * a.width;
        let out = self.scratch("sum", n);
        self.ops.gpu.dispatch(&mut self.rec, kernels::Add { len: n as u32 }, &[&a.buf, &b.buf, &out], Gpu::groups_for(n));
        Ok(Rows { buf: out, ..a.clone() })
    }

    /// One sequence (the GPU runs batch 1), so every query row attends over all of `k`.
    fn attention(&mut self, q: &Rows, k: &Rows, v: &Rows, heads: usize, _queries: Option<&[u32]>) -> Result<Rows> {
        let (tq, tk, h) = (q.rows, k.rows, q.width);
        let ctx = self.scratch("attention", tq * h);
        let hd = h / heads;
        let params = kernels::Attention { keys: tk as u32, heads: heads as u32, head_dim: hd as u32, scale: 1.0 / (hd as f32).sqrt() };
        self.ops.gpu.dispatch(&mut self.rec, params, &[&q.buf, &k.buf, &v.buf, &ctx], (tq as u32, heads as u32));
        Ok(Rows { buf: ctx, rows: tq, width: h })
    }

    fn gather_rows(&mut self, x: &Rows, rows: &[u32]) -> Result<Rows> {
        let (n, h) = (rows.len(), x.width);
        let idx = self.upload_u32("rows", rows);
        let picked = self.scratch("rows", n * h);
        self.ops.gpu.dispatch(&mut self.rec, kernels::Gather { rows: n as u32, width: h as u32 }, &[&x.buf, &idx, &picked], Gpu::groups_for(n * h));
        Ok(Rows { buf: picked, rows: n, width: h })
    }
}

impl Pass<'_> {
    /// `LN(x (+ r))`; with `keep`, also the sum `x + r` (the pre-LN residual stream).
    fn norm(&mut self, n: &GpuNorm, x: &Rows, r: Option<&Rows>, keep: bool) -> (Rows, Option<Rows>) {
        let (rows, h) = (x.rows, x.width);
        let y = self.scratch("norm out", rows * h);
        let s = self.scratch("residual", if keep { rows * h } else { 1 });
        let params = kernels::LayerNorm { rows: rows as u32, width: h as u32, eps: n.eps, add_residual: r.is_some() as u32, keep_sum: keep as u32 };
        let rb = r.map_or(&x.buf, |r| &r.buf);
        self.ops.gpu.dispatch(&mut self.rec, params, &[&x.buf, rb, &n.g, &n.b, &y, &s], Gpu::groups_for_rows(rows));
        (Rows { buf: y, rows, width: h }, keep.then(|| Rows { buf: s, rows, width: h }))
    }
}
