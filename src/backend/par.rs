//! Work split across threads: rayon's global pool (in the threaded wasm build, the package's
//! pool of workers; natively, the machine's cores; in the single-thread builds, the calling
//! thread alone).
//!
//! Results must not depend on the thread count, so kernels split their *outputs* into tasks
//! that write disjoint parts, and every output element is computed by the same instructions
//! in the same order whichever task computes it (no reduction is ever split across tasks).

use rayon::prelude::*;

/// Threads that run a split kernel's tasks.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Runs `f` on a thread of the pool, where there is one and this is not already such a
/// thread: a whole forward pass or training step, so that each split kernel inside it starts
/// on the thread that reached it while the others join, instead of the caller handing every
/// kernel over and sleeping until it ends.
///
/// In wasm the other threads also stay awake for the whole of `f`, looking for work, instead
/// of going to sleep between kernels: rayon's idle threads spin only ~32 rounds of
/// `yield_now` (a no-op in wasm) before sleeping, and waking one through `Atomics.notify` is
/// slow next to a kernel (a forward splits ~85 of them). The caller's thread sleeps meanwhile,
/// so the pool's threads still have a core each.
pub fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if threads() == 1 || rayon::current_thread_index().is_some() {
        return f();
    }
    #[cfg(target_arch = "wasm32")]
    return awake(f);
    #[cfg(not(target_arch = "wasm32"))]
    rayon::scope(|_| f())
}

/// [`run`]'s pool kept awake. Only for a pool that one caller uses at a time (the engine's
/// thread in wasm): a thread held here by another caller's `f` could never take this one's
/// keep-awake job from under its own stack.
#[cfg(target_arch = "wasm32")]
fn awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (done, waiting) = (&AtomicBool::new(false), &AtomicUsize::new(0));
    rayon::scope(|s| {
        let owner = rayon::current_thread_index();
        s.spawn_broadcast(move |_, ctx| {
            if Some(ctx.index()) == owner {
                return;
            }
            waiting.fetch_add(1, Ordering::AcqRel);
            // Work found here (the halves of `f`'s splits) runs nested in this loop.
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
        });
        // `f` starts once every other thread sits in the loop above, at the bottom of its
        // stack: none can then be holding a half of `f` under the loop (which would wait for
        // `f`, which would wait for that half).
        while waiting.load(Ordering::Acquire) < threads() - 1 {
            rayon::yield_now();
            std::hint::spin_loop();
        }
        let r = f();
        done.store(true, Ordering::Release);
        r
    })
}

/// Runs `f(0) … f(tasks - 1)`, in parallel where there is a pool, in order otherwise.
pub fn for_each(tasks: usize, f: impl Fn(usize) + Sync + Send) {
    if tasks <= 1 || threads() == 1 {
        (0..tasks).for_each(f)
    } else {
        // One task per split: rayon otherwise splits only into halves between two threads
        // (more only where a half is stolen), and a thread that finishes its half first
        // waits for the other (~20 % of a forward's time in wasm).
        (0..tasks).into_par_iter().with_max_len(1).for_each(f)
    }
}

/// Elementwise `f` over `xs` in chunks of `chunk` elements (one task each).
pub fn chunks_mut<T: Send>(xs: &mut [T], chunk: usize, f: impl Fn(&mut [T]) + Sync + Send) {
    if xs.len() <= chunk || threads() == 1 {
        f(xs)
    } else {
        xs.par_chunks_mut(chunk).with_max_len(1).for_each(f)
    }
}

/// An output buffer that the tasks of one kernel share, each writing only its own elements
/// (the kernels' task split guarantees they are disjoint).
pub struct Out<T = f32> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks write disjoint elements (see the kernels' splits) and nothing reads `Out`
// until the parallel loop that holds it has returned.
unsafe impl<T: Send> Sync for Out<T> {}
unsafe impl<T: Send> Send for Out<T> {}

impl<T: Copy> Out<T> {
    pub fn new(out: &mut [T]) -> Self {
        Self { ptr: out.as_mut_ptr(), len: out.len() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `at..at + len`, for a task to write in place.
    ///
    /// # Safety
    /// No other task may touch these elements while the slice lives.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, at: usize, len: usize) -> &mut [T] {
        assert!(at + len <= self.len, "output range {at}+{len} out of {}", self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(at), len)
    }
}

/// A kernel's `len` outputs, in a vector that is not zeroed first: zeroing the MLM head's
/// 16 MB of logits took ~10 % of a forward, all of it on the one thread that waits for the
/// pool.
///
/// # Safety
/// `kernel` must write every element of the `Out` it is given, unless it fails.
pub unsafe fn written<E>(len: usize, kernel: impl FnOnce(&Out) -> Result<(), E>) -> Result<Vec<f32>, E> {
    let [v] = written_each(len, |[out]| kernel(out))?;
    Ok(v)
}

/// [`written`] for a kernel with `N` outputs of `len` elements each.
///
/// # Safety
/// `kernel` must write every element of each `Out` it is given, unless it fails.
pub unsafe fn written_each<const N: usize, E>(len: usize, kernel: impl FnOnce(&[Out; N]) -> Result<(), E>) -> Result<[Vec<f32>; N], E> {
    let mut vs: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(len));
    let outs = std::array::from_fn(|i| Out { ptr: vs[i].as_mut_ptr(), len });
    kernel(&outs)?;
    for v in &mut vs {
        // SAFETY: the caller's kernel wrote all `len` elements of each.
        v.set_len(len);
    }
    Ok(vs)
}

impl Out {
    /// Writes element `at`.
    #[inline(always)]
    pub fn set(&self, at: usize, v: f32) {
        assert!(at < self.len, "output index {at} out of {}", self.len);
        // SAFETY: in bounds (checked); no other task writes element `at`.
        unsafe { *self.ptr.add(at) = v }
    }

    /// A pointer to element `at`, for vector stores.
    ///
    /// # Safety
    /// `at + width` must be at most the length, for the `width` elements written through it,
    /// and no other task may write them.
    #[inline(always)]
    pub unsafe fn at(&self, at: usize) -> *mut f32 {
        debug_assert!(at < self.len);
        self.ptr.add(at)
    }

    /// Copies `src` to elements `at..at + src.len()`.
    #[inline(always)]
    pub fn write(&self, at: usize, src: &[f32]) {
        assert!(at + src.len() <= self.len, "output range {at}+{} out of {}", src.len(), self.len);
        // SAFETY: in bounds (checked); no other task writes these elements.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(at), src.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_with_any_pool_size() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut seen = vec![0f32; 37];
            let out = Out::new(&mut seen);
            pool.install(|| for_each(37, |t| out.set(t, t as f32 + 1.0)));
            assert_eq!(seen, (1..=37).map(|t| t as f32).collect::<Vec<_>>(), "{threads} threads");
        }
    }
}
