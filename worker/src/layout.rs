//! Tensor layouts that keep burn-flex 0.21 on its vectorised paths.
//!
//! burn-flex vectorises an element-wise op between two contiguous tensors,
//! and a broadcast only when the broadcast operand is one row shared by every
//! outer index (or one scalar per row). Any other broadcast — a
//! `[batch, 1, d]` operand against `[batch, positions, d]`, or a
//! `[1, positions, d]` table — runs element by element through a strided
//! iterator, which took 41 % of a small diffusion step and 12 % of the Nanda
//! step (`bench/RESULTS.md`). Both model families build their per-position
//! additions and per-sample modulations with these two helpers.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `x + table` for `x`: [batch, positions, d] and a per-position `table`:
/// [positions, d], added as [batch, positions · d] + [1, positions · d], the
/// shared-row broadcast burn-flex vectorises.
pub(crate) fn add_per_position<B: Backend>(x: Tensor<B, 3>, table: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, positions, d] = x.dims();
    (x.reshape([batch, positions * d]) + table.reshape([1, positions * d])).reshape([batch, positions, d])
}

/// One row per batch element, [batch, d], repeated over `positions`:
/// [batch, positions, d]. Repeating is a few memcpys, after which a product
/// with a [batch, positions, d] tensor is one between two contiguous tensors.
pub(crate) fn per_position<B: Backend>(rows: Tensor<B, 2>, positions: usize) -> Tensor<B, 3> {
    rows.unsqueeze_dim::<3>(1).repeat_dim(1, positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;

    #[test]
    fn both_equal_the_broadcast_they_replace() {
        let device = Default::default();
        let x = Tensor::<TestBackend, 1, burn::tensor::Int>::arange(0..24, &device).float().reshape([2, 3, 4]);
        let table = Tensor::<TestBackend, 1, burn::tensor::Int>::arange(100..112, &device).float().reshape([3, 4]);
        let rows = Tensor::<TestBackend, 1, burn::tensor::Int>::arange(50..58, &device).float().reshape([2, 4]);
        let broadcast_sum: Vec<f32> = (x.clone() + table.clone().unsqueeze::<3>()).into_data().to_vec().expect("f32");
        assert_eq!(add_per_position(x.clone(), table).into_data().to_vec::<f32>().expect("f32"), broadcast_sum);
        let broadcast_product: Vec<f32> = (x.clone() * rows.clone().unsqueeze_dim::<3>(1)).into_data().to_vec().expect("f32");
        assert_eq!((x * per_position(rows, 3)).into_data().to_vec::<f32>().expect("f32"), broadcast_product);
    }
}
