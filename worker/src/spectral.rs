//! Singular values of a small dense matrix and the effective rank built on them.
//!
//! The measures need the singular values of two matrices of at most a few
//! hundred rows and columns per evaluation (W_E and W_L), on the host. A
//! one-sided Jacobi (Hestenes) iteration does that in a few dozen lines with
//! f64 accuracy; a linear-algebra crate (nalgebra, faer) would add its build
//! to every cold CI run for this one call.

/// Singular values of the row-major `rows × cols` matrix, descending.
pub fn singular_values(matrix: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(matrix.len(), rows * cols, "a {rows} × {cols} matrix");
    // Orthogonalise the columns of whichever orientation has fewer of them:
    // `columns[j]` is column j of A (or of Aᵀ), contiguous.
    let (count, length) = if cols <= rows { (cols, rows) } else { (rows, cols) };
    let mut columns: Vec<Vec<f64>> =
        (0..count).map(|j| (0..length).map(|i| if cols <= rows { matrix[i * cols + j] } else { matrix[j * cols + i] }).collect()).collect();
    for _sweep in 0..60 {
        let mut rotated = false;
        for i in 0..count {
            for j in i + 1..count {
                let (left, right) = columns.split_at_mut(j);
                let (a, b) = (&mut left[i], &mut right[0]);
                let alpha: f64 = a.iter().map(|x| x * x).sum();
                let beta: f64 = b.iter().map(|x| x * x).sum();
                let gamma: f64 = a.iter().zip(b.iter()).map(|(x, y)| x * y).sum();
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                    let (u, v) = (*x, *y);
                    *x = c * u - s * v;
                    *y = s * u + c * v;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut values: Vec<f64> = columns.iter().map(|column| column.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

/// Effective rank (Roy & Vetterli 2007): exp of the Shannon entropy of the
/// singular values normalised to sum to 1. 1 for a rank-one matrix, n for n
/// equal singular values, 0 for the zero matrix.
pub fn effective_rank(singular_values: &[f64]) -> f64 {
    let total: f64 = singular_values.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = singular_values.iter().map(|value| value / total).filter(|p| *p > 0.0).map(|p| -p * p.ln()).sum();
    entropy.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows × cols matrix U Σ Vᵀ with U and V products of Givens rotations, so its singular values are Σ.
    fn with_singular_values(sigma: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        let rotation = |n: usize, seed: usize| {
            let mut q = vec![0.0; n * n];
            for i in 0..n {
                q[i * n + i] = 1.0;
            }
            for step in 0..3 * n {
                let (i, j) = ((step * 7 + seed) % n, (step * 3 + seed + 1) % n);
                if i == j {
                    continue;
                }
                let angle = 0.3 + step as f64 * 0.7;
                let (c, s) = (angle.cos(), angle.sin());
                for row in 0..n {
                    let (a, b) = (q[row * n + i], q[row * n + j]);
                    q[row * n + i] = c * a - s * b;
                    q[row * n + j] = s * a + c * b;
                }
            }
            q
        };
        let (u, v) = (rotation(rows, 1), rotation(cols, 2));
        let mut a = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                a[r * cols + c] = sigma.iter().enumerate().map(|(k, s)| u[r * rows + k] * s * v[c * cols + k]).sum();
            }
        }
        a
    }

    #[test]
    fn singular_values_of_a_built_matrix_are_the_ones_it_was_built_with() {
        let sigma = [5.0, 3.0, 2.0, 0.5];
        for (rows, cols) in [(6, 4), (4, 7)] {
            let found = singular_values(&with_singular_values(&sigma, rows, cols), rows, cols);
            assert_eq!(found.len(), 4);
            for (found, want) in found.iter().zip(sigma) {
                assert!((found - want).abs() < 1e-10, "{rows}×{cols}: {found} vs {want}");
            }
        }
    }

    #[test]
    fn a_rank_one_matrix_has_one_singular_value_and_effective_rank_one() {
        let (u, v) = ([1.0, 2.0, 2.0], [3.0, 4.0]);
        let matrix: Vec<f64> = u.iter().flat_map(|a| v.iter().map(move |b| a * b)).collect();
        let values = singular_values(&matrix, 3, 2);
        assert!((values[0] - 15.0).abs() < 1e-12 && values[1].abs() < 1e-12, "{values:?}"); // ‖u‖·‖v‖ = 3 · 5
        assert!((effective_rank(&values) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn effective_rank_closed_forms() {
        assert!((effective_rank(&[2.0; 7]) - 7.0).abs() < 1e-12);
        let p = [0.75f64, 0.25];
        let want = (-(p[0] * p[0].ln() + p[1] * p[1].ln())).exp();
        assert!((effective_rank(&[3.0, 1.0]) - want).abs() < 1e-12);
        assert_eq!(effective_rank(&[0.0, 0.0]), 0.0);
        let identity: Vec<f64> = (0..16).map(|i| if i % 5 == 0 { 1.0 } else { 0.0 }).collect();
        assert!((effective_rank(&singular_values(&identity, 4, 4)) - 4.0).abs() < 1e-12);
    }
}
