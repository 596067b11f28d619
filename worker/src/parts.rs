//! A pack's full-batch step on several CPU threads: the batch's rows are cut
//! into parts, each part's loss and gradient are computed on a thread of the
//! pack's own rayon pool ([`PartThreads`]), and the gradients are summed. The
//! loss is a sum over rows, so the sum of the parts' gradients is the whole
//! batch's (in another order of summation).
//!
//! Each family says how many rows a part needs at least (a transformer row is
//! one input; a diffusion row a whole image, many times the work).
//!
//! Why: burn-flex runs every element-wise operation, gather and allocation on
//! the calling thread and only its matrix products on rayon's pool, so one
//! thread's step left the other cores idle for about half of each step (at
//! p = 113 on 2 cores, 19 of 35 ms; bench/RESULTS.md, "Session 19"). With one
//! part per core those operations run side by side, and the parts' matrix
//! products share the pool. burn's cubecl backends (CUDA, wgpu) run one
//! stream of kernels, so a pack there is never cut ([`parts_for`]).
//!
//! Each part's parameters but the first's are fresh leaves of the autodiff
//! graph with the parameters' ids ([`Fresh`]): burn-autodiff keeps graphs
//! that share a node under one lock for the whole backward pass, which would
//! serialise them.

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// Most parts one step is cut into, whatever the threads: only 1 and 2
/// parts (on 2 cores) were measured.
pub(crate) const MAX_PARTS: usize = 8;

/// How many parts a step over `rows` rows (summed over the pack's trials) is
/// cut into with `threads` threads for it, on backend `B`: 1 on the cubecl
/// backends, else at most one per thread, one per `min_rows` rows (the
/// family's: below it a thread costs more than its share of the work saves)
/// and [`MAX_PARTS`].
pub(crate) fn parts_for<B: Backend>(rows: usize, min_rows: usize, threads: usize, device: &B::Device) -> usize {
    if crate::backend::is_cubecl(&B::name(device)) {
        return 1;
    }
    threads.min(rows / min_rows.max(1)).clamp(1, MAX_PARTS)
}

/// Row range `[start, end)` of part `part` of `parts` over `rows` rows: the
/// parts are contiguous, in order, and differ in size by at most one row.
pub(crate) fn part_range(rows: usize, part: usize, parts: usize) -> std::ops::Range<usize> {
    rows * part / parts..rows * (part + 1) / parts
}

/// The threads of a pack's step: a rayon pool of its own with one thread per
/// step thread. Part k runs on thread k and nowhere else
/// ([`rayon::ThreadPool::broadcast`]); every thread helps with the matrix
/// products of every part (burn-flex's gemm calls use the pool of the thread
/// that makes them). A step of one part runs on the pool too.
///
/// Why a pool: threads outside it hand each product to rayon's global pool
/// and sleep until it is done, about 30 hand-offs a part per step; on pool
/// threads the same step took a fifth less (p = 113 on 2 cores: about 21
/// ms against about 27 with OS threads of their own, bench/RESULTS.md,
/// "Session 19"). Why its own pool, and a broadcast rather than spawned
/// jobs: a rayon thread that waits inside a product runs other queued jobs
/// on its own stack, and if one were another part (of this pack or of
/// another pack in a shared pool), burn-autodiff's cleanup after that
/// part's backward pass would wait for the graph lock that the interrupted
/// part's backward pass holds on the same thread. A broadcast job runs only
/// on its own thread, and nothing else is ever queued on this pool.
pub(crate) struct PartThreads {
    threads: usize,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for PartThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartThreads").field("threads", &self.threads).field("started", &self.pool.is_some()).finish()
    }
}

impl PartThreads {
    /// The threads of a step that may use `threads` of them (the pool is
    /// made on first use; none for one thread).
    pub(crate) fn new(threads: usize) -> Self {
        PartThreads { threads, pool: None }
    }

    /// [`PartThreads::new`] for a step on backend `B`: one thread, the
    /// pack's own, on the cubecl backends, whose kernels go to a stream of
    /// the thread that launches them.
    pub(crate) fn for_backend<B: Backend>(threads: usize, device: &B::Device) -> Self {
        Self::new(if crate::backend::is_cubecl(&B::name(device)) { 1 } else { threads })
    }

    /// The gradients of Σ_parts `loss(model, part)` with respect to
    /// `model`'s parameters (at most as many parts as threads): each part on
    /// a thread of the pool, parts 1.. with the parameters as fresh leaves,
    /// summed parameter by parameter in part order. With one thread, or where
    /// the pool cannot be made, on this thread one part after another.
    pub(crate) fn gradients<B, M, P, F>(&mut self, model: &M, parts: &[P], loss: F) -> GradientsParams
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Sync,
        P: Sync,
        F: Fn(&M, &P) -> Tensor<B, 1> + Sync,
    {
        assert!(!parts.is_empty(), "a step has at least one part");
        let gradients_of = |model: &M, part: &P| GradientsParams::from_grads(loss(model, part).backward(), model);
        let part_gradients = |index: usize| match index {
            0 => gradients_of(model, &parts[0]),
            _ => gradients_of(&model.clone().map(&mut Fresh), &parts[index]),
        };
        let results: Vec<GradientsParams> = match self.pool() {
            // One part on a thread of the pool, which the others help with its products.
            Some(pool) if parts.len() == 1 => vec![pool.install(|| part_gradients(0))],
            Some(pool) => {
                assert!(parts.len() <= pool.current_num_threads(), "at most one part per thread");
                pool.broadcast(|context| (context.index() < parts.len()).then(|| part_gradients(context.index())))
                    .into_iter()
                    .flatten()
                    .collect()
            }
            None => (0..parts.len()).map(part_gradients).collect(),
        };
        let mut results = results.into_iter();
        let mut gradients = results.next().expect("part 0");
        for mut other in results {
            model.visit(&mut AddGradients { into: &mut gradients, other: &mut other });
        }
        gradients
    }

    /// `work` on the pool (so rayon work inside it, such as the optimiser's
    /// chunks, runs on the step's threads), or here with one thread.
    pub(crate) fn install<R: Send>(&mut self, work: impl FnOnce() -> R + Send) -> R {
        match self.pool() {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    /// The pool, or `None` for one thread or where the system cannot start
    /// the threads (warned once).
    fn pool(&mut self) -> Option<&rayon::ThreadPool> {
        if self.threads < 2 {
            return None;
        }
        if self.pool.is_none() {
            match rayon::ThreadPoolBuilder::new().num_threads(self.threads).thread_name(|index| format!("step-{index}")).build() {
                Ok(pool) => self.pool = Some(pool),
                Err(error) => {
                    tracing::warn!(%error, threads = self.threads, "no threads for a step's parts: they run one after another");
                    self.threads = 1;
                }
            }
        }
        self.pool.as_ref()
    }
}

/// Every parameter as a new leaf of the autodiff graph, with the same id.
struct Fresh;

impl<B: AutodiffBackend> ModuleMapper<B> for Fresh {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, Tensor::from_inner(tensor.inner()).require_grad(), mapper)
    }
}

/// Adds the gradients in `other` to those in `into`, parameter by parameter.
struct AddGradients<'a> {
    into: &'a mut GradientsParams,
    other: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for AddGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let id = param.id;
        let sum = match (self.into.remove::<B::InnerBackend, D>(id), self.other.remove::<B::InnerBackend, D>(id)) {
            (Some(mine), Some(theirs)) => mine + theirs,
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => return,
        };
        self.into.register(id, sum);
    }
}

/// Every parameter's gradient in `gradients`, in `model`'s order (empty for
/// a parameter the loss does not reach): what the families' tests of cut
/// steps compare.
#[cfg(test)]
pub(crate) fn gradient_values<M: burn::module::Module<crate::backend::TestAutodiffBackend>>(
    model: &M,
    gradients: &GradientsParams,
) -> Vec<Vec<f32>> {
    use crate::backend::{TestAutodiffBackend, TestBackend};
    struct Values<'a> {
        gradients: &'a GradientsParams,
        values: Vec<Vec<f32>>,
    }
    impl ModuleVisitor<TestAutodiffBackend> for Values<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<TestAutodiffBackend, D>>) {
            self.values.push(self.gradients.get::<TestBackend, D>(param.id).map(crate::host).unwrap_or_default());
        }
    }
    let mut visitor = Values { gradients, values: Vec::new() };
    model.visit(&mut visitor);
    visitor.values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_rows_in_order_without_overlap() {
        for (rows, parts) in [(10, 3), (3830, 2), (7, 7), (662, 4)] {
            let ranges: Vec<_> = (0..parts).map(|part| part_range(rows, part, parts)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[parts - 1].end, rows);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{rows} rows in {parts}");
            }
            let sizes: Vec<usize> = ranges.iter().map(|range| range.len()).collect();
            assert!(sizes.iter().max().expect("parts") - sizes.iter().min().expect("parts") <= 1, "{sizes:?}");
        }
    }

    #[test]
    fn the_part_count_follows_threads_rows_and_the_cap() {
        let device = Default::default();
        let parts = |rows, threads| parts_for::<crate::backend::TestBackend>(rows, 256, threads, &device);
        assert_eq!(parts(3830, 1), 1);
        assert_eq!(parts(3830, 2), 2);
        assert_eq!(parts(662, 4), 2, "one part per 256 rows");
        assert_eq!(parts(100, 4), 1, "fewer rows than one part's minimum");
        assert_eq!(parts(1 << 20, 64), MAX_PARTS);
        assert_eq!(parts(3830, 0), 1);
        assert_eq!(parts_for::<crate::backend::TestBackend>(100, 0, 4, &device), 4, "no minimum");
    }
}
