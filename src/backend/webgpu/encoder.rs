//! The encoder's forward pass on the GPU: the same computation as `model::Encoder` (one model
//! definition; this file only places its tensors in GPU buffers and orders the kernels).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use candle_core::Tensor;

use candle_core::quantized::GgmlDType;

use super::{Gpu, Recorder};
use crate::error::{Error, Result};
use crate::model::weights::Stored;
use crate::model::WeightStore;
use crate::model::config::Activation;
use crate::model::config::ModelConfig;
use crate::model::encoder::{check_sequence, LayerNorm, Linear};
use crate::model::Encoder;
use crate::diffusion::sampler::MAX_RANKED;
use crate::diffusion::{Ranked, Scoring};

struct GpuLinear {
    /// f32 weights, or a one-float placeholder when `q8` holds them.
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    /// q8_0 weights as stored in the file: packed int8 quants and per-32 scales.
    q8: Option<(wgpu::Buffer, wgpu::Buffer)>,
    out: usize,
    inp: usize,
}

/// The q8_0 blocks of a stored tensor, repacked for the GPU: int8 quants four to a u32 and
/// one f32 scale per block of 32 (GGUF's 34-byte blocks are not 4-byte aligned).
fn q8_blocks(store: &WeightStore, name: &str, k: usize) -> Result<Option<(Vec<u32>, Vec<f32>)>> {
    let Some(Stored::Quant(q)) = store.get(name) else { return Ok(None) };
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

struct GpuNorm {
    g: wgpu::Buffer,
    b: wgpu::Buffer,
    eps: f32,
}

struct GpuLayer {
    q: GpuLinear,
    k: GpuLinear,
    v: GpuLinear,
    o: GpuLinear,
    attn_norm: GpuNorm,
    inter: GpuLinear,
    output: GpuLinear,
    ffn_norm: GpuNorm,
}

/// An encoder whose weights live on the GPU.
pub struct GpuEncoder {
    pub gpu: Gpu,
    word: wgpu::Buffer,
    pos: wgpu::Buffer,
    tt: wgpu::Buffer,
    embed_norm: GpuNorm,
    layers: Vec<GpuLayer>,
    final_norm: Option<GpuNorm>,
    head_dense: GpuLinear,
    head_norm: GpuNorm,
    decoder: GpuLinear,
    pre_ln: bool,
    act: u32,
    head_act: u32,
    hidden: usize,
    heads: usize,
    config: ModelConfig,
    /// Scratch buffers by byte size: a forward takes them here and returns them after its
    /// readback, so the steps of a generation (same length) allocate nothing new.
    pool: RefCell<HashMap<u64, Vec<wgpu::Buffer>>>,
    in_use: RefCell<Vec<wgpu::Buffer>>,
    dummy: wgpu::Buffer,
    dummy_u32: wgpu::Buffer,
    split: Cell<(usize, usize)>,
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

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::Gelu => 1,
        Activation::GeluTanh => 2,
        Activation::Relu => 3,
    }
}

impl GpuEncoder {
    /// Uploads `enc`'s weights — q8_0 matrices in their quantized form when `store` holds
    /// them so (4× less GPU memory and bandwidth), the rest as f32. Refuses models the
    /// adapter's buffer limit cannot hold.
    pub fn new(gpu: Gpu, enc: &Encoder, store: Option<&WeightStore>) -> Result<Self> {
        let cfg = &enc.config;
        let (h, heads) = (cfg.hidden_size, cfg.num_attention_heads);
        if h / heads > 128 {
            return Err(Error::Device(format!("head size {} exceeds the attention kernel's 128", h / heads)));
        }
        let biggest = (cfg.vocab_size.max(cfg.intermediate_size) * h * 4) as u64;
        if biggest > gpu.max_buffer {
            return Err(Error::Device(format!(
                "a {biggest}-byte weight exceeds the adapter's storage buffer limit of {} bytes",
                gpu.max_buffer
            )));
        }
        let lin = |l: &Linear, name: &str| -> Result<GpuLinear> {
            let (out, inp) = l.dims;
            let b = match &l.bias {
                Some(b) => data(b)?,
                None => vec![0.0; out],
            };
            let q8 = match store {
                Some(st) => q8_blocks(st, &l.name, inp)?,
                None => None,
            };
            Ok(match q8 {
                Some((quants, scales)) => GpuLinear {
                    w: gpu.upload(name, &[]),
                    b: gpu.upload(name, &b),
                    q8: Some((gpu.upload_u32(name, &quants), gpu.upload(name, &scales))),
                    out,
                    inp,
                },
                None => GpuLinear { w: gpu.upload(name, &data(l.weight()?)?), b: gpu.upload(name, &b), q8: None, out, inp },
            })
        };
        let norm = |n: &LayerNorm, name: &str| -> Result<GpuNorm> {
            Ok(GpuNorm { g: gpu.upload(name, &data(&n.weight)?), b: gpu.upload(name, &data(&n.bias)?), eps: n.eps as f32 })
        };
        let mut layers = Vec::with_capacity(enc.layers.len());
        for (i, l) in enc.layers.iter().enumerate() {
            let n = |what: &str| format!("layer {i} {what}");
            layers.push(GpuLayer {
                q: lin(&l.query, &n("q"))?,
                k: lin(&l.key, &n("k"))?,
                v: lin(&l.value, &n("v"))?,
                o: lin(&l.attn_out, &n("o"))?,
                attn_norm: norm(&l.attn_norm, &n("attn norm"))?,
                inter: lin(&l.intermediate, &n("ffn in"))?,
                output: lin(&l.output, &n("ffn out"))?,
                ffn_norm: norm(&l.ffn_norm, &n("ffn norm"))?,
            });
        }
        let tt = match &enc.token_type_embeddings {
            Some(t) => data(t)?,
            None => vec![0.0; h],
        };
        let (act, head_act) = enc.activations();
        Ok(Self {
            word: gpu.upload("word embeddings", &data(&enc.word_embeddings)?),
            pos: gpu.upload("position embeddings", &data(&enc.position_embeddings)?),
            tt: gpu.upload("token type", &tt),
            embed_norm: norm(&enc.embed_norm, "embed norm")?,
            layers,
            final_norm: enc.final_norm.as_ref().map(|n| norm(n, "final norm")).transpose()?,
            head_dense: lin(&enc.head_dense, "head dense")?,
            head_norm: norm(&enc.head_norm, "head norm")?,
            decoder: lin(&enc.decoder, "decoder")?,
            pre_ln: enc.family.pre_layer_norm(),
            act: act_code(act),
            head_act: act_code(head_act),
            hidden: h,
            heads,
            config: cfg.clone(),
            pool: RefCell::default(),
            in_use: RefCell::default(),
            dummy: gpu.upload("unused", &[]),
            dummy_u32: gpu.upload_u32("unused", &[]),
            split: Cell::new((split_target(gpu.device_type), 128)),
            gpu,
        })
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

    /// How many matrices live on the GPU as q8_0 blocks.
    pub fn quantized_matrices(&self) -> usize {
        let lins = self.layers.iter().flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.inter, &l.output]);
        lins.chain([&self.head_dense, &self.decoder]).filter(|l| l.q8.is_some()).count()
    }

    /// Scratch buffers held by the pool (for tests: steps of one length reuse them).
    pub fn pooled_buffers(&self) -> usize {
        self.pool.borrow().values().map(Vec::len).sum()
    }

    fn linear(&self, rec: &mut Recorder, l: &GpuLinear, x: &wgpu::Buffer, rows: usize, act: u32) -> wgpu::Buffer {
        let out = self.scratch("linear out", rows * l.out);
        let flags = 1 | (act << 1) | if l.q8.is_some() { 8 } else { 0 };
        let tiles = (l.out.div_ceil(64) as u32, rows.div_ceil(64) as u32);
        // Unused bindings get the placeholder buffers (every binding must be bound).
        let (wq, ws8) = match &l.q8 {
            Some((q, s)) => (q, s),
            None => (&self.dummy_u32, &self.dummy),
        };
        let (target, min_slice) = self.split.get();
        let split = split_k(tiles.0 * tiles.1, l.inp, target, min_slice);
        let (m, n, k) = (rows as u32, l.out as u32, l.inp as u32);
        match split {
            None => self.gpu.dispatch(rec, "matmul", &[x, &l.w, &l.b, &out, wq, ws8], [m, n, k, flags, 0, 0, 0, 0], tiles),
            Some((len, splits)) => {
                let part = self.scratch("partial sums", splits * rows * l.out);
                self.gpu.dispatch(rec, "matmul", &[x, &l.w, &l.b, &part, wq, ws8], [m, n, k, flags, len as u32, 0, 0, 0], (tiles.0, tiles.1, splits as u32));
                let mn = rows * l.out;
                self.gpu.dispatch(rec, "split_sum", &[&part, &l.b, &out], [mn as u32, n, splits as u32, flags, 0, 0, 0, 0], Gpu::groups_for(mn));
            }
        }
        out
    }

    /// Sets how many workgroups a matmul should reach before it is split along `k` (0: never
    /// split), and the shortest slice of `k` a split may make. The defaults ([`SPLIT_TARGET`],
    /// 128) suit a large discrete GPU; benchmarks compare settings, tests force splits on
    /// the small fixtures.
    pub fn set_split(&self, workgroups: usize, min_slice: usize) {
        self.split.set((workgroups, min_slice.max(16)));
    }

    /// `LN(x (+ r))`; with `keep`, also the sum `x + r` (the pre-LN residual stream).
    fn norm(
        &self,
        rec: &mut Recorder,
        n: &GpuNorm,
        x: &wgpu::Buffer,
        r: Option<&wgpu::Buffer>,
        rows: usize,
        keep: bool,
    ) -> (wgpu::Buffer, Option<wgpu::Buffer>) {
        let h = self.hidden;
        let y = self.scratch("norm out", rows * h);
        let s = self.scratch("residual", if keep { rows * h } else { 1 });
        let flags = r.is_some() as u32 | ((keep as u32) << 1);
        let params = [rows as u32, h as u32, n.eps.to_bits(), flags, 0, 0, 0, 0];
        let groups = Gpu::groups_for_rows(rows);
        self.gpu.dispatch(rec, "layer_norm", &[x, r.unwrap_or(x), &n.g, &n.b, &y, &s], params, groups);
        (y, keep.then_some(s))
    }

    fn add(&self, rec: &mut Recorder, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize) -> wgpu::Buffer {
        let out = self.scratch("sum", n);
        self.gpu.dispatch(rec, "add", &[a, b, &out], [n as u32, 0, 0, 0, 0, 0, 0, 0], Gpu::groups_for(n));
        out
    }

    /// Attention of `tq` query rows (`q_in`) over the `tk` rows of `kv_in`.
    fn attention(&self, rec: &mut Recorder, l: &GpuLayer, q_in: &wgpu::Buffer, kv_in: &wgpu::Buffer, tq: usize, tk: usize) -> wgpu::Buffer {
        let (q, k, v) = (self.linear(rec, &l.q, q_in, tq, 0), self.linear(rec, &l.k, kv_in, tk, 0), self.linear(rec, &l.v, kv_in, tk, 0));
        let ctx = self.scratch("attention", tq * self.hidden);
        let hd = self.hidden / self.heads;
        let scale = (1.0 / (hd as f32).sqrt()).to_bits();
        let params = [tk as u32, self.heads as u32, hd as u32, scale, 0, 0, 0, 0];
        self.gpu.dispatch(rec, "attention", &[&q, &k, &v, &ctx], params, (tq as u32, self.heads as u32));
        self.linear(rec, &l.o, &ctx, tq, 0)
    }

    /// Rows `idx` (`rows` of them) of `x`, `[rows × hidden]`.
    fn gather(&self, rec: &mut Recorder, x: &wgpu::Buffer, idx: &wgpu::Buffer, rows: usize) -> wgpu::Buffer {
        let h = self.hidden;
        let picked = self.scratch("rows", rows * h);
        self.gpu.dispatch(rec, "gather", &[x, idx, &picked], [rows as u32, h as u32, 0, 0, 0, 0, 0, 0], Gpu::groups_for(rows * h));
        picked
    }

    /// Logits `[positions × vocab]` (row-major) for one sequence, like `Encoder::logits_at`:
    /// the last layer computes its queries, feed-forward and norms only for the requested rows
    /// (every row still gives keys and values), and the head runs on those rows alone.
    pub async fn logits_at(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        check_sequence(&self.config, ids, positions)?;
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        self.recycle();
        let mut rec = self.gpu.encoder();
        let logits = self.record_logits(&mut rec, ids, positions);
        let out = self.gpu.read(rec, &logits, positions.len() * self.config.vocab_size).await;
        self.recycle();
        out
    }

    /// The rows' top `k` allowed ids by temperature-scaled logit (repetition penalty applied),
    /// with their scaled logits and each row's log-normaliser, ranked on the GPU
    /// ([`kernels::TOP_K`]): a step reads back `2k + 1` words per row instead of the
    /// vocabulary (16,384 for the default model). `k` is clamped to the vocabulary.
    pub async fn ranked_at(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Ranked> {
        check_sequence(&self.config, ids, positions)?;
        let vocab = self.config.vocab_size;
        let k = s.k.min(vocab);
        let (t, pen) = (s.temperature, s.repetition_penalty);
        if !(1..=MAX_RANKED).contains(&k) || !(t > 0.0 && t.is_finite()) || !(pen > 0.0 && pen.is_finite()) {
            return Err(Error::options(format!("GPU ranking takes 1 ≤ k ≤ {MAX_RANKED}, a temperature > 0 and a penalty > 0")));
        }
        let rows = positions.len();
        if rows == 0 {
            return Ok(Ranked { k, ..Default::default() });
        }
        self.recycle();
        let g = &self.gpu;
        let mut rec = g.encoder();
        let logits = self.record_logits(&mut rec, ids, positions);
        if pen != 1.0 && !s.seen.is_empty() {
            let seen = g.upload_u32("seen", &s.seen);
            let n = rows * s.seen.len();
            g.dispatch(&mut rec, "penalize", &[&logits, &seen], [rows as u32, vocab as u32, s.seen.len() as u32, pen.to_bits(), 0, 0, 0, 0], Gpu::groups_for(n));
        }
        let stride = 2 * k + 1;
        let top = self.scratch("top k", rows * stride);
        let ban = g.upload_u32("banned", &s.banned);
        let groups = Gpu::groups_for_rows(rows);
        let params = [rows as u32, vocab as u32, k as u32, (1.0 / t).to_bits(), s.banned.len() as u32, 0, 0, 0];
        g.dispatch(&mut rec, "top_k", &[&logits, &ban, &top], params, groups);
        let words = g.read(rec, &top, rows * stride).await;
        self.recycle();
        let words: Vec<u32> = words?.iter().map(|v| v.to_bits()).collect();
        match Ranked::from_words(&words, k) {
            Some(r) if r.check(rows, vocab) => Ok(r),
            _ => Err(Error::Device("the GPU returned an invalid ranking".into())),
        }
    }

    /// Records a forward whose last buffer holds the logits `[positions × vocab]`.
    fn record_logits(&self, rec: &mut Recorder, ids: &[u32], positions: &[usize]) -> wgpu::Buffer {
        let (t, h) = (ids.len(), self.hidden);
        let g = &self.gpu;
        let ids_buf = g.upload_u32("ids", ids);
        let emb = self.scratch("embeddings", t * h);
        g.dispatch(rec, "embed", &[&ids_buf, &self.word, &self.pos, &self.tt, &emb], [t as u32, h as u32, self.config.position_offset() as u32, 0, 0, 0, 0, 0], Gpu::groups_for(t * h));
        let (mut x, _) = self.norm(rec, &self.embed_norm, &emb, None, t, false);
        let rows = positions.len();
        let idx: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let idx_buf = g.upload_u32("positions", &idx);
        // At least one layer (a validated config): the last one leaves only the requested rows.
        let last = self.layers.len().saturating_sub(1);
        for (li, l) in self.layers.iter().enumerate() {
            let tq = if li == last { rows } else { t };
            let pick = |rec: &mut Recorder, b: &wgpu::Buffer| if li == last { self.gather(rec, b, &idx_buf, rows) } else { b.clone() };
            if self.pre_ln {
                let (hn, _) = self.norm(rec, &l.attn_norm, &x, None, t, false);
                let q_in = pick(rec, &hn);
                let res = pick(rec, &x);
                let a = self.attention(rec, l, &q_in, &hn, tq, t);
                let (h2, s) = self.norm(rec, &l.ffn_norm, &res, Some(&a), tq, true);
                let f = self.linear(rec, &l.inter, &h2, tq, self.act);
                let o = self.linear(rec, &l.output, &f, tq, 0);
                x = self.add(rec, &s.expect("kept residual"), &o, tq * h);
            } else {
                let q_in = pick(rec, &x);
                let a = self.attention(rec, l, &q_in, &x, tq, t);
                let (x1, _) = self.norm(rec, &l.attn_norm, &q_in, Some(&a), tq, false);
                let f = self.linear(rec, &l.inter, &x1, tq, self.act);
                let o = self.linear(rec, &l.output, &f, tq, 0);
                x = self.norm(rec, &l.ffn_norm, &x1, Some(&o), tq, false).0;
            }
        }
        if let Some(fnorm) = &self.final_norm {
            x = self.norm(rec, fnorm, &x, None, rows, false).0;
        }
        let y = self.linear(rec, &self.head_dense, &x, rows, self.head_act);
        let (y, _) = self.norm(rec, &self.head_norm, &y, None, rows, false);
        self.linear(rec, &self.decoder, &y, rows, 0)
    }

    /// Gives the device back (to upload other weights on it).
    pub fn into_gpu(self) -> Gpu {
        self.gpu
    }

    /// [`GpuEncoder::ranked_at`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn ranked_at_blocking(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Ranked> {
        pollster::block_on(self.ranked_at(ids, positions, s))
    }

    /// [`GpuEncoder::logits_at`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits_at_blocking(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        pollster::block_on(self.logits_at(ids, positions))
    }
}

/// In the browser a step awaits the GPU's readback inside Rust ([`crate::diffusion::Session::step_async`]).
impl crate::diffusion::AsyncDenoiser for GpuEncoder {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    async fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        self.logits_at(ids, positions).await
    }
    async fn ranked(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Option<Ranked>> {
        self.ranked_at(ids, positions, s).await.map(Some)
    }
}

/// Natively a [`GpuEncoder`] is a sampler backend (blocking on each step's readback) that
/// ranks on the GPU: a step reads back each row's top-k, not its logits.
#[cfg(not(target_arch = "wasm32"))]
impl crate::diffusion::Denoiser for GpuEncoder {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        self.logits_at_blocking(ids, positions)
    }
    fn ranked(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Option<Ranked>> {
        self.ranked_at_blocking(ids, positions, s).map(Some)
    }
}
