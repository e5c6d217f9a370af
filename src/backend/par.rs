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

/// Runs `f(0) … f(tasks - 1)`, in parallel where there is a pool, in order otherwise.
pub fn for_each(tasks: usize, f: impl Fn(usize) + Sync + Send) {
    if tasks <= 1 || threads() == 1 {
        (0..tasks).for_each(f)
    } else {
        (0..tasks).into_par_iter().for_each(f)
    }
}

/// Elementwise `f` over `xs` in chunks of `chunk` elements (one task each).
pub fn chunks_mut<T: Send>(xs: &mut [T], chunk: usize, f: impl Fn(&mut [T]) + Sync + Send) {
    if xs.len() <= chunk || threads() == 1 {
        f(xs)
    } else {
        xs.par_chunks_mut(chunk).for_each(f)
    }
}

/// An output buffer that the tasks of one kernel share, each writing only its own elements
/// (the kernels' task split guarantees they are disjoint).
pub struct Out {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks write disjoint elements (see the kernels' splits) and nothing reads `Out`
// until the parallel loop that holds it has returned.
unsafe impl Sync for Out {}
unsafe impl Send for Out {}

impl Out {
    pub fn new(out: &mut [f32]) -> Self {
        Self { ptr: out.as_mut_ptr(), len: out.len() }
    }

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
