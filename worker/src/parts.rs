//! A pack's full-batch step on several CPU threads: the batch's rows are cut
//! into parts, each part's loss and gradient are computed on a thread of its
//! own, and the gradients are summed. The loss is a sum over rows, so the sum
//! of the parts' gradients is the whole batch's (in another order of
//! summation).
//!
//! Each family says how many rows a part needs at least (a transformer row is
//! one input; a diffusion row a whole image, many times the work).
//!
//! Why: burn-flex runs every element-wise operation, gather and allocation on
//! the calling thread and only its matrix products on rayon's pool, so one
//! thread's step left the other cores idle for about half of each step (at
//! p = 113 on 2 cores, 19 of 35 ms; bench/RESULTS.md, "Session 19"). With one
//! part per core those operations run side by side, and the parts' matrix
//! products share rayon's pool. burn's cubecl backends (CUDA, wgpu) run one
//! stream of kernels, so a pack there is never cut ([`parts_for`]).
//!
//! Each thread's parameters are fresh leaves of the autodiff graph with the
//! parameters' ids ([`Fresh`]): burn-autodiff keeps graphs that share a node
//! under one lock for the whole backward pass, which would serialise them.

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// Most parts one step is cut into, whatever the threads: only 1 and 2 (and
/// 3 and 4 on 2 cores, no faster than 2) were measured.
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

/// The gradients of Σ_parts `loss(model, part)` with respect to `model`'s
/// parameters: part 0 on this thread, each other part on a scoped thread of
/// its own with the parameters as fresh leaves, summed parameter by
/// parameter in part order.
pub(crate) fn gradients_in_parts<B, M, P, F>(model: &M, parts: &[P], loss: F) -> GradientsParams
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Send,
    P: Sync,
    F: Fn(&M, &P) -> Tensor<B, 1> + Sync,
{
    let [first, others @ ..] = parts else { panic!("a step has at least one part") };
    let gradients_of = |model: &M, part: &P| GradientsParams::from_grads(loss(model, part).backward(), model);
    if others.is_empty() {
        return gradients_of(model, first);
    }
    std::thread::scope(|scope| {
        let threads: Vec<_> = others
            .iter()
            .map(|part| {
                let own = model.clone().map(&mut Fresh);
                let gradients_of = &gradients_of;
                scope.spawn(move || gradients_of(&own, part))
            })
            .collect();
        let mut gradients = gradients_of(model, first);
        for thread in threads {
            let mut other = thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            model.visit(&mut AddGradients { into: &mut gradients, other: &mut other });
        }
        gradients
    })
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
