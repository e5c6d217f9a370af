#!/usr/bin/env python3
"""cuBLAS (through PyTorch) on the shapes `examples/webgpu_bench.rs` times in WGSL, for the ratio
asked in issue #6: y = x · Wᵀ + b in f32 (TF32 off: like for like with our f32 kernel), and for
reference TF32 and bf16 (tensor cores, which WGSL cannot reach).
    python bench/cublas.py [--big]
"""
import sys

import torch

shapes = [(256, 384, 384), (256, 384, 1536), (256, 1536, 384), (141, 384, 16384), (141, 384, 30522)]
if "--big" in sys.argv:
    shapes += [(2048, 2048, 2048), (4096, 4096, 4096)]
print("device:", torch.cuda.get_device_name(), "torch", torch.__version__)
for m, k, n in shapes:
    row = []
    for name, dtype, tf32 in (("f32", torch.float32, False), ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x = torch.randn(m, k, device="cuda", dtype=dtype)
        w = torch.randn(n, k, device="cuda", dtype=dtype)
        b = torch.randn(n, device="cuda", dtype=dtype)
        reps = 10 if m * k * n > 1 << 30 else 50
        for _ in range(3):
            torch.addmm(b, x, w.t())
        best = float("inf")
        for _ in range(3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                torch.addmm(b, x, w.t())
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / reps)
        row.append(f"{name} {best * 1e3:.3f} ms {2 * m * k * n / best / 1e9:.1f} GFLOP/s")
    print(f"cublas {m}×{k}×{n}: " + " | ".join(row))
