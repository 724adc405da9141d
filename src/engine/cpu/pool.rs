//! A small persistent thread pool for the forward pass: workers spin briefly between jobs, then
//! sleep, and the calling thread works too.
//!
//! Why not rayon: a decode step issues ~200 parallel regions (7 matmuls × 30 layers); rayon's
//! wake-up and join cost (several µs each) is a large share of a 5–8 ms step on 2 cores. This
//! is the same spin-then-park design llama.cpp and candle's barrier pool use. Work inside a job
//! is handed out through an atomic counter, so uneven tasks balance themselves.
//!
//! Must be used by one caller at a time (a mutex enforces it); jobs must not panic.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How many spin iterations a worker waits for the next job before sleeping (~50–100 µs):
/// long enough to bridge the gaps between matmuls of one step, short enough not to burn a
/// core while the engine is idle.
const SPIN_LIMIT: u32 = 20_000;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    epoch: AtomicU64,
    job: UnsafeCell<Option<Job>>,
    n_tasks: AtomicUsize,
    next: AtomicUsize,
    pending: AtomicUsize,
    shutdown: AtomicBool,
    /// Workers asleep (or about to sleep) on `wake`; the caller skips the notify syscall when 0.
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

// The job pointer is only written while no worker reads it (between epochs), and only read
// while the caller of `run` keeps the closure alive.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// The pool. `threads` includes the calling thread.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    caller: Mutex<()>,
}

impl Pool {
    /// A pool of `threads` (≥ 1) threads including the caller.
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            n_tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("maspo-cpu-{i}"))
                    .spawn(move || worker(s))
                    .expect("spawning a compute thread")
            })
            .collect();
        Self {
            shared,
            workers,
            threads,
            caller: Mutex::new(()),
        }
    }

    /// Threads including the caller.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(0..n_tasks)` across the pool and returns when every task is done.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _guard = self.caller.lock().unwrap_or_else(|p| p.into_inner());
        let s = &*self.shared;
        // SAFETY: workers only read `job` after observing the new epoch, and `run` does not
        // return before every worker has finished with it (pending == 0).
        let f_static: Job =
            unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(f) };
        unsafe { *s.job.get() = Some(f_static) };
        s.n_tasks.store(n_tasks, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        s.pending.store(self.workers.len(), Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        loop {
            let i = s.next.fetch_add(1, Ordering::Relaxed);
            if i >= n_tasks {
                break;
            }
            f(i);
        }
        while s.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        unsafe { *s.job.get() = None };
    }
}

fn worker(s: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let epoch = loop {
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen || s.shutdown.load(Ordering::Relaxed) {
                break e;
            }
            spins += 1;
            if spins < SPIN_LIMIT {
                std::hint::spin_loop();
            } else {
                // Announce the sleep before re-checking the epoch (both SeqCst): either the caller
                // sees `sleepers > 0` and notifies under the lock, or we see its new epoch.
                let guard = s.sleep_lock.lock().unwrap_or_else(|p| p.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                if s.epoch.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
                    let _g = s.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
        };
        if s.shutdown.load(Ordering::Relaxed) {
            return;
        }
        seen = epoch;
        // SAFETY: see `Pool::run`.
        let job = unsafe { (*s.job.get()).expect("a job is set for every new epoch") };
        let n = s.n_tasks.load(Ordering::Relaxed);
        loop {
            let i = s.next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            unsafe { (*job)(i) };
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        {
            let _l = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A raw pointer that tasks may share to write disjoint parts of one output buffer.
#[derive(Clone, Copy)]
pub struct SharedOut(*mut f32);

unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Wraps a buffer.
    pub fn new(buf: &mut [f32]) -> Self {
        Self(buf.as_mut_ptr())
    }

    /// Writes element `i`.
    ///
    /// # Safety
    /// `i` must be in bounds of the wrapped buffer and no other task may access element `i`.
    #[inline]
    pub unsafe fn write(self, i: usize, v: f32) {
        unsafe { *self.0.add(i) = v };
    }

    /// A mutable slice of the wrapped buffer.
    ///
    /// # Safety
    /// The range must be in bounds and not accessed by any other task.
    #[inline]
    pub unsafe fn slice(self, start: usize, len: usize) -> &'static mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once_across_many_jobs() {
        let pool = Pool::new(3);
        for n in [1usize, 2, 7, 100] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                pool.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 50));
        }
    }

    #[test]
    fn sleeping_workers_wake_up() {
        let pool = Pool::new(2);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let sum = AtomicUsize::new(0);
        pool.run(64, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 64 * 63 / 2);
    }
}
