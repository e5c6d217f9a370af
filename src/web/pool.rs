//! The threaded build's pool (`target_feature = "atomics"`): rayon's global pool, whose
//! threads are run by the package's pool workers (Web Workers, or Node's `worker_threads`),
//! each an instance of the same module on the same shared memory.
//!
//! The order matters because rayon's `build_global` blocks until every thread of the pool has
//! started: the engine's thread makes a [`Pool`], starts the workers with its
//! [`Pool::receiver`], waits until each has instantiated the module and entered
//! [`pool_worker_run`] (waiting for a thread), and only then calls [`Pool::build`], whose
//! threads are handed to the waiting workers.
//!
//! The hand-over is a queue under a mutex that the workers poll, spinning (only the few
//! milliseconds until the pool is built), not a std channel or a sleep between polls: in Node
//! 20 a worker blocked in `mpsc::Receiver::recv` was never woken by the engine thread's send,
//! and one in `thread::sleep` never returned (rayon's own waits, on condition variables, wake).

use std::sync::Mutex;

use rayon::ThreadBuilder;
use wasm_bindgen::prelude::*;

/// Threads of the pool being built, waiting for a worker each.
struct Waiting(Mutex<Vec<ThreadBuilder>>);

#[wasm_bindgen]
pub struct Pool {
    threads: usize,
    /// Leaked: workers keep reading it for as long as the module lives.
    waiting: &'static Waiting,
}

#[wasm_bindgen]
impl Pool {
    #[wasm_bindgen(constructor)]
    pub fn new(threads: usize) -> Pool {
        let waiting = Box::leak(Box::new(Waiting(Mutex::new(Vec::new()))));
        Pool { threads, waiting }
    }

    /// What a worker passes to [`pool_worker_run`].
    pub fn receiver(&self) -> usize {
        self.waiting as *const Waiting as usize
    }

    /// Builds rayon's global pool on the waiting workers (call once every worker is waiting).
    pub fn build(self) -> Result<(), JsError> {
        let waiting = self.waiting;
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("unmask-pool-{i}"))
            .spawn_handler(move |thread| {
                waiting.0.lock().map_err(|e| std::io::Error::other(e.to_string()))?.push(thread);
                Ok(())
            })
            .build_global()
            .map_err(|e| JsError::new(&format!("the thread pool did not start: {e}")))
    }
}

/// A pool worker's whole life: takes one thread of the pool and runs it until the module ends.
#[wasm_bindgen(js_name = poolWorkerRun)]
pub fn pool_worker_run(receiver: usize) {
    // SAFETY: `receiver` is a `Pool::receiver` of this module's memory, leaked, never freed.
    let waiting = unsafe { &*(receiver as *const Waiting) };
    loop {
        let thread = match waiting.0.lock() {
            Ok(mut queue) => queue.pop(),
            Err(_) => return,
        };
        match thread {
            Some(thread) => return thread.run(),
            None => std::hint::spin_loop(),
        }
    }
}

/// The module and memory a pool worker instantiates the module with.
#[wasm_bindgen(js_name = poolShared)]
pub fn pool_shared() -> js_sys::Array {
    js_sys::Array::of2(&wasm_bindgen::module(), &wasm_bindgen::memory())
}
