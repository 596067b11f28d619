//! Tensor layouts that keep burn-flex 0.21 on its vectorised paths.
//!
//! burn-flex vectorises an element-wise op between two contiguous tensors,
//! and a broadcast only when the broadcast operand is one row shared by every
//! outer index (or one scalar per row). Any other broadcast — a
//! `[batch, 1, d]` operand against `[batch, positions, d]`, or a
//! `[1, positions, d]` table — runs element by element through a strided
//! iterator, which took 41 % of a small diffusion step and 12 % of the Nanda
//! step (`bench/RESULTS.md`). Both model families build their per-sample
//! modulations and per-trial biases and tables with these helpers (a
//! per-position table of a pack of one is a per-trial bias of its rows).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// One row per batch element, [batch, d], repeated over `positions`:
/// [batch, positions, d] ([`spread_rows`]), after which a product with a
/// [batch, positions, d] tensor is one between two contiguous tensors.
pub(crate) fn per_position<B: Backend>(rows: Tensor<B, 2>, positions: usize) -> Tensor<B, 3> {
    let [batch, d] = rows.dims();
    spread_rows(rows, positions).reshape([batch, positions, d])
}

/// `x + bias` for `x`: [trials, rows, d] and one `bias` row per trial,
/// [trials, d]. A pack of one adds it as [rows, d] + [1, d] (the shared row
/// burn-flex vectorises); a larger pack spreads each trial's row over its
/// rows first ([`spread_rows`]), so the addition is between two contiguous
/// tensors.
pub(crate) fn add_per_trial<B: Backend>(x: Tensor<B, 3>, bias: Tensor<B, 2>) -> Tensor<B, 3> {
    let [trials, rows, d] = x.dims();
    if trials == 1 {
        return (x.reshape([rows, d]) + bias).reshape([1, rows, d]);
    }
    x + spread_rows(bias, rows).reshape([trials, rows, d])
}

/// Each row of `rows` ([n, d]) `times` times in a row: [n · times, d].
///
/// On the CPU by `select` (each output row gathers its source row):
/// burn-flex 0.21's `repeat_dim` fills a byte vector and then copies it whole
/// into an aligned buffer, and at p = 47 a pack of 8's repeats took a quarter
/// of its forward pass against 3.5 % for the same `select`s (bench/RESULTS.md,
/// "Session 16"). burn's cubecl backends repeat: their 0.21 `select`
/// gradient walks every index once per column, serially
/// ([`crate::transformer::model::Gather`]).
fn spread_rows<B: Backend>(rows: Tensor<B, 2>, times: usize) -> Tensor<B, 2> {
    let [n, d] = rows.dims();
    let device = rows.device();
    if crate::backend::is_cubecl(&B::name(&device)) {
        return rows.unsqueeze_dim::<3>(1).repeat_dim(1, times).reshape([n * times, d]);
    }
    let source: Vec<i64> = (0..n as i64).flat_map(|row| std::iter::repeat_n(row, times)).collect();
    rows.select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(source, [n * times]), &device))
}

/// One scalar per trial, [trials], as a [trials, 1] column on `device`:
/// multiplying a [trials, n] tensor by it is burn-flex's vectorised
/// per-row-scalar broadcast.
pub(crate) fn per_trial_column<B: Backend>(values: &[f32], device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len(), 1]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;

    #[test]
    fn per_position_rows_equal_the_broadcast_they_replace() {
        let device = Default::default();
        let x = Tensor::<TestBackend, 1, burn::tensor::Int>::arange(0..24, &device).float().reshape([2, 3, 4]);
        let rows = Tensor::<TestBackend, 1, burn::tensor::Int>::arange(50..58, &device).float().reshape([2, 4]);
        let broadcast_product: Vec<f32> = (x.clone() * rows.clone().unsqueeze_dim::<3>(1)).into_data().to_vec().expect("f32");
        assert_eq!((x * per_position(rows, 3)).into_data().to_vec::<f32>().expect("f32"), broadcast_product);
    }

    #[test]
    fn per_trial_bias_equals_the_broadcast_it_replaces() {
        let device = Default::default();
        for trials in [1usize, 3] {
            let x = Tensor::<TestBackend, 1, burn::tensor::Int>::arange(0..(trials * 8) as i64, &device).float().reshape([trials, 2, 4]);
            let bias =
                Tensor::<TestBackend, 1, burn::tensor::Int>::arange(100..100 + (trials * 4) as i64, &device).float().reshape([trials, 4]);
            let broadcast: Vec<f32> = (x.clone() + bias.clone().unsqueeze_dim::<3>(1)).into_data().to_vec().expect("f32");
            assert_eq!(add_per_trial(x, bias).into_data().to_vec::<f32>().expect("f32"), broadcast, "{trials} trials");
        }
    }
}
