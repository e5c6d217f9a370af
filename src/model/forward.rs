//! The encoder + MLM head's forward pass, written once over [`Ops`]: the CPU (inference and
//! training) and the GPU run this same function on their own weight types. Layouts differ
//! only in where layer norm sits (post-LN BERT/RoBERTa, pre-LN roberta-prelayernorm), which
//! [`Wiring`] says.

use crate::backend::{Activation, Ops};
use crate::error::Result;

/// One transformer layer's weights.
pub struct Layer<L, N> {
    pub query: L,
    pub key: L,
    pub value: L,
    pub attn_out: L,
    /// Post-LN: `attention.output.LayerNorm` (after the residual). Pre-LN: `attention.LayerNorm`.
    pub attn_norm: N,
    pub intermediate: L,
    pub output: L,
    /// Post-LN: `output.LayerNorm`. Pre-LN: `intermediate.LayerNorm`.
    pub ffn_norm: N,
}

impl<L, N> Layer<L, N> {
    /// The layer's linears in [`LAYER_LINEARS`]' order.
    pub fn linears(&self) -> [&L; 6] {
        [&self.query, &self.key, &self.value, &self.attn_out, &self.intermediate, &self.output]
    }

    /// [`Layer::linears`], to change.
    pub fn linears_mut(&mut self) -> [&mut L; 6] {
        [&mut self.query, &mut self.key, &mut self.value, &mut self.attn_out, &mut self.intermediate, &mut self.output]
    }
}

/// Where a layer's linears sit under `…layer.{i}.` in a checkpoint, in [`Layer::linears_mut`]'s
/// order.
pub const LAYER_LINEARS: [&str; 6] =
    ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"];

/// Every weight of an encoder with its MLM head, as some backend holds them.
pub struct Weights<L, N, E> {
    pub embeddings: E,
    pub embed_norm: N,
    /// At least one (a validated config).
    pub layers: Vec<Layer<L, N>>,
    /// Pre-LN models normalise the encoder's output once more.
    pub final_norm: Option<N>,
    pub head_dense: L,
    pub head_norm: N,
    /// `[vocab, hidden]`: tied to the word embeddings unless the checkpoint stores its own.
    pub decoder: L,
}

impl<L, N, E> Weights<L, N, E> {
    /// The same weights in another backend's types (an upload to a device).
    pub fn try_map<L2, N2, E2>(
        &self,
        mut lin: impl FnMut(&L, &str) -> Result<L2>,
        mut norm: impl FnMut(&N, &str) -> Result<N2>,
        emb: impl FnOnce(&E) -> Result<E2>,
    ) -> Result<Weights<L2, N2, E2>> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let n = |what: &str| format!("layer {i} {what}");
            layers.push(Layer {
                query: lin(&l.query, &n("query"))?,
                key: lin(&l.key, &n("key"))?,
                value: lin(&l.value, &n("value"))?,
                attn_out: lin(&l.attn_out, &n("attention out"))?,
                attn_norm: norm(&l.attn_norm, &n("attention norm"))?,
                intermediate: lin(&l.intermediate, &n("ffn in"))?,
                output: lin(&l.output, &n("ffn out"))?,
                ffn_norm: norm(&l.ffn_norm, &n("ffn norm"))?,
            });
        }
        Ok(Weights {
            embeddings: emb(&self.embeddings)?,
            embed_norm: norm(&self.embed_norm, "embedding norm")?,
            layers,
            final_norm: self.final_norm.as_ref().map(|n| norm(n, "final norm")).transpose()?,
            head_dense: lin(&self.head_dense, "head dense")?,
            head_norm: norm(&self.head_norm, "head norm")?,
            decoder: lin(&self.decoder, "decoder")?,
        })
    }

    /// Every linear, the layers' first.
    pub fn linears(&self) -> impl Iterator<Item = &L> {
        let layers = self.layers.iter().flat_map(|l| [&l.query, &l.key, &l.value, &l.attn_out, &l.intermediate, &l.output]);
        layers.chain([&self.head_dense, &self.decoder])
    }
}

/// How a model's layers are wired, beyond its weights.
#[derive(Debug, Clone, Copy)]
pub struct Wiring {
    /// Layer norm before each sub-layer (roberta-prelayernorm) rather than after its residual.
    pub pre_ln: bool,
    pub heads: usize,
    /// The feed-forward layers' activation.
    pub act: Activation,
    /// The MLM head transform's: `transformers`' RoBERTa heads hard-code exact GELU; BERT's
    /// follow `hidden_act`.
    pub head_act: Activation,
    /// The position of the first token (RoBERTa counts from its padding id + 1).
    pub position_offset: usize,
}

/// Hidden states of `batch` equal-length sequences `ids`; with `rows` (numbered across the
/// batch, grouped by sequence: [`Ops::gather_rows`]), only those rows: the last layer then
/// computes its queries, feed-forward and norms for those rows alone (every row still serves
/// as a key and value). Exact, since each row of a layer's output depends on the other rows
/// only through the keys and values.
pub fn hidden<B: Ops>(ops: &mut B, w: &Weights<B::Linear, B::Norm, B::Embeddings>, wiring: &Wiring, ids: &[u32], batch: usize, rows: Option<&[u32]>) -> Result<B::X> {
    let x = embed(ops, w, wiring, ids, batch)?;
    let x = layers(ops, w, wiring, x, 0, rows)?;
    finish(ops, w, x)
}

/// [`hidden`], the layers below `from` run by `lower` and the rest by `upper`: a fine-tune
/// that trains only the top layers runs the frozen ones without recording a graph.
#[allow(clippy::too_many_arguments)]
pub fn hidden_from<A, B>(lower: &mut A, upper: &mut B, w: &Weights<A::Linear, A::Norm, A::Embeddings>, wiring: &Wiring, ids: &[u32], batch: usize, from: usize, rows: Option<&[u32]>) -> Result<A::X>
where
    A: Ops,
    B: Ops<X = A::X, Linear = A::Linear, Norm = A::Norm, Embeddings = A::Embeddings>,
{
    let x = embed(lower, w, wiring, ids, batch)?;
    let x = layers_below(lower, w, wiring, x, from)?;
    let x = layers(upper, w, wiring, x, from, rows)?;
    finish(upper, w, x)
}

fn embed<B: Ops>(ops: &mut B, w: &Weights<B::Linear, B::Norm, B::Embeddings>, wiring: &Wiring, ids: &[u32], batch: usize) -> Result<B::X> {
    let emb = ops.embed(&w.embeddings, ids, batch, wiring.position_offset)?;
    ops.add_norm(&w.embed_norm, &emb, None)
}

/// Layers `from..`, the last one for `rows` only where given.
fn layers<B: Ops>(ops: &mut B, w: &Weights<B::Linear, B::Norm, B::Embeddings>, wiring: &Wiring, mut x: B::X, from: usize, rows: Option<&[u32]>) -> Result<B::X> {
    let last = w.layers.len().saturating_sub(1);
    for (i, layer) in w.layers.iter().enumerate().skip(from) {
        x = layer_forward(ops, layer, wiring, &x, rows.filter(|_| i == last))?;
    }
    Ok(x)
}

/// Layers `..to`, every row.
fn layers_below<B: Ops>(ops: &mut B, w: &Weights<B::Linear, B::Norm, B::Embeddings>, wiring: &Wiring, mut x: B::X, to: usize) -> Result<B::X> {
    for layer in w.layers.iter().take(to) {
        x = layer_forward(ops, layer, wiring, &x, None)?;
    }
    Ok(x)
}

fn finish<B: Ops>(ops: &mut B, w: &Weights<B::Linear, B::Norm, B::Embeddings>, x: B::X) -> Result<B::X> {
    match &w.final_norm {
        Some(n) => ops.add_norm(n, &x, None),
        None => Ok(x),
    }
}

/// One layer; with `rows`, only those rows of its output.
fn layer_forward<B: Ops>(ops: &mut B, l: &Layer<B::Linear, B::Norm>, wiring: &Wiring, x: &B::X, rows: Option<&[u32]>) -> Result<B::X> {
    let pick = |ops: &mut B, t: &B::X| -> Result<Option<B::X>> { rows.map(|r| ops.gather_rows(t, r)).transpose() };
    if wiring.pre_ln {
        let n = ops.add_norm(&l.attn_norm, x, None)?;
        let q_in = pick(ops, &n)?;
        let res = pick(ops, x)?;
        let a = attention(ops, l, wiring, q_in.as_ref().unwrap_or(&n), &n, rows)?;
        let (h, s) = ops.add_norm_keep(&l.ffn_norm, res.as_ref().unwrap_or(x), &a)?;
        let f = ffn(ops, l, wiring, &h)?;
        ops.add(&s, &f)
    } else {
        let q_in = pick(ops, x)?;
        let q_in = q_in.as_ref().unwrap_or(x);
        let a = attention(ops, l, wiring, q_in, x, rows)?;
        let x1 = ops.add_norm(&l.attn_norm, q_in, Some(&a))?;
        let f = ffn(ops, l, wiring, &x1)?;
        ops.add_norm(&l.ffn_norm, &x1, Some(&f))
    }
}

/// Attention of the rows `q_in` (every row, or the rows `rows`) over the keys and values of
/// all rows `kv_in`.
fn attention<B: Ops>(ops: &mut B, l: &Layer<B::Linear, B::Norm>, wiring: &Wiring, q_in: &B::X, kv_in: &B::X, rows: Option<&[u32]>) -> Result<B::X> {
    let q = ops.linear(&l.query, q_in, None)?;
    let k = ops.linear(&l.key, kv_in, None)?;
    let v = ops.linear(&l.value, kv_in, None)?;
    let ctx = ops.attention(&q, &k, &v, wiring.heads, rows)?;
    ops.linear(&l.attn_out, &ctx, None)
}

fn ffn<B: Ops>(ops: &mut B, l: &Layer<B::Linear, B::Norm>, wiring: &Wiring, x: &B::X) -> Result<B::X> {
    let y = ops.linear(&l.intermediate, x, Some(wiring.act))?;
    ops.linear(&l.output, &y, None)
}

/// MLM logits for hidden states. Generation calls this only on the masked positions: the
/// head is the model's largest matmul.
pub fn head<B: Ops>(ops: &mut B, w: &Weights<B::Linear, B::Norm, B::Embeddings>, wiring: &Wiring, x: &B::X) -> Result<B::X> {
    let y = head_transform(ops, w, wiring, x)?;
    ops.linear(&w.decoder, &y, None)
}

/// The head up to its decoder (training fuses the decoder with the loss).
pub fn head_transform<B: Ops>(ops: &mut B, w: &Weights<B::Linear, B::Norm, B::Embeddings>, wiring: &Wiring, x: &B::X) -> Result<B::X> {
    let y = ops.linear(&w.head_dense, x, Some(wiring.head_act))?;
    ops.add_norm(&w.head_norm, &y, None)
}
