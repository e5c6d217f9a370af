//! The WGSL kernels of the forward pass (one `.wgsl` file each under `wgsl/`, included at
//! compile time) and their launch parameters: one typed uniform struct per kernel, laid out
//! as the kernel's `struct Params`. f32 only, no subgroups and no `shader-f16` (SwiftShader,
//! Chromium's software WebGPU, has neither).

use bytemuck::{Pod, Zeroable};

/// A kernel's launch parameters: its name, its WGSL source, and the uniform it reads.
pub trait Kernel: Pod {
    const NAME: &'static str;
    const SOURCE: &'static str;
}

/// The bytes a launch's parameters may take in the uniform buffer (one slot per launch).
pub const PARAMS_BYTES: usize = 32;

macro_rules! kernels {
    ($( $(#[$doc:meta])* $ty:ident = $name:literal, $source:expr, { $( $(#[$fdoc:meta])* $field:ident : $fty:ty ),* $(,)? } )*) => {
        $(
            $(#[$doc])*
            #[repr(C)]
            #[derive(Debug, Clone, Copy, Pod, Zeroable)]
            pub struct $ty { $( $(#[$fdoc])* pub $field: $fty ),* }
            impl Kernel for $ty {
                const NAME: &'static str = $name;
                const SOURCE: &'static str = $source;
            }
            const _: () = assert!(std::mem::size_of::<$ty>() <= PARAMS_BYTES);
        )*
        /// Every kernel: name and source.
        pub const ALL: &[(&str, &str)] = &[$( ($name, $source) ),*];
    };
}

/// The activation codes of `wgsl/activations.wgsl`.
pub mod act {
    pub const NONE: u32 = 0;
    pub const GELU: u32 = 1;
    pub const GELU_TANH: u32 = 2;
    pub const RELU: u32 = 3;
}

kernels! {
    /// `out[m × n] = act(x[m × k] · w[n × k]ᵀ + bias)`, or with `k_slice` one slice of `k`'s
    /// raw partial sums per workgroup z (split-K). Buffers: x, w, bias, out, wq, ws8.
    Matmul = "matmul", concat!(include_str!("wgsl/activations.wgsl"), include_str!("wgsl/matmul.wgsl")), {
        m: u32, n: u32, k: u32,
        /// 0, or the length of each workgroup's slice of `k` (a multiple of 16).
        k_slice: u32,
        has_bias: u32,
        /// An [`act`] code.
        act: u32,
        /// The weights are q8_0 blocks in wq / ws8 rather than f32 in w.
        q8: u32,
    }
    /// `out[e] = act(Σ_z part[z][e] + bias[e % n])`: the end of a split-K matmul. Buffers:
    /// part, bias, out.
    SplitSum = "split_sum", concat!(include_str!("wgsl/activations.wgsl"), include_str!("wgsl/split_sum.wgsl")), {
        /// m · n.
        len: u32, n: u32, splits: u32, has_bias: u32, act: u32,
    }
    /// `y = LN(x (+ r))` per row, and the sum `x + r` into s with `keep_sum`. Buffers: x, r,
    /// gain, bias, y, s.
    LayerNorm = "layer_norm", include_str!("wgsl/layer_norm.wgsl"), {
        rows: u32, width: u32, eps: f32, add_residual: u32, keep_sum: u32,
    }
    /// Unmasked attention of each query row (workgroup x) and head (y) over `keys` rows.
    /// Buffers: q, k, v, out.
    Attention = "attention", include_str!("wgsl/attention.wgsl"), {
        keys: u32, heads: u32,
        /// At most 128.
        head_dim: u32,
        scale: f32,
    }
    /// Each logit row's top `k` allowed ids, their scaled logits and the log-normaliser, in
    /// place of the row's keys. Buffers: logits (overwritten), banned ids, out.
    TopK = "top_k", include_str!("wgsl/top_k.wgsl"), {
        rows: u32, vocab: u32,
        /// 1 ..= [`crate::backend::rank::MAX_RANKED`], at most `vocab`.
        k: u32,
        inv_temperature: f32,
        /// How many ids the banned buffer holds.
        banned: u32,
    }
    /// `transformers`' repetition penalty in place on the `seen` ids of each row. Buffers:
    /// logits, seen ids.
    Penalize = "penalize", include_str!("wgsl/penalize.wgsl"), {
        rows: u32, vocab: u32, seen: u32, penalty: f32,
    }
    /// `out[t, :] = word[ids[t], :] + pos[t + position_offset, :] + tt[:]`. Buffers: ids, word,
    /// pos, tt, out.
    Embed = "embed", include_str!("wgsl/embed.wgsl"), {
        tokens: u32, width: u32, position_offset: u32,
    }
    /// `out[i, :] = x[rows[i], :]`. Buffers: x, rows, out.
    Gather = "gather", include_str!("wgsl/gather.wgsl"), {
        rows: u32, width: u32,
    }
    /// `out = a + b`. Buffers: a, b, out.
    Add = "add", include_str!("wgsl/add.wgsl"), {
        len: u32,
    }
}
