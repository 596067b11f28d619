//! Omnigrok's knob (Liu et al. 2023): every initial weight of a model
//! multiplied by one factor, `init_scale`. Parameters that do not train
//! (fixed tables) are left as they are.

use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

struct Scale(f64);

impl<B: AutodiffBackend> ModuleMapper<B> for Scale {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let scaled = Tensor::from_inner(tensor.inner().mul_scalar(self.0)).require_grad();
        Param::from_mapped_value(id, scaled, mapper)
    }
}

/// `module` with every trainable parameter multiplied by `factor` (1 returns it unchanged).
pub(crate) fn scale_weights<B: AutodiffBackend, M: AutodiffModule<B>>(module: M, factor: f64) -> M {
    if factor == 1.0 {
        return module;
    }
    module.map(&mut Scale(factor))
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleVisitor};
    use burn::tensor::backend::Backend;

    use super::*;
    use crate::backend::TestAutodiffBackend;
    use crate::transformer::model::{Transformer, TransformerConfig};

    type AB = TestAutodiffBackend;

    struct Values(Vec<f64>);

    impl<B: Backend> ModuleVisitor<B> for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.extend(param.val().into_data().iter::<f64>());
        }
    }

    fn values(model: &Transformer<AB>) -> Vec<f64> {
        let mut visitor = Values(Vec::new());
        model.visit(&mut visitor);
        visitor.0
    }

    #[test]
    fn every_weight_is_multiplied_and_still_trains() {
        let model: Transformer<AB> = TransformerConfig::new(7).with_d_model(8).with_n_heads(2).with_d_mlp(16).init(&Default::default());
        let before = values(&model);
        let scaled = scale_weights(model, 2.5);
        let after = values(&scaled);
        assert_eq!(before.len(), after.len());
        assert!(before.iter().any(|value| *value != 0.0));
        for (b, a) in before.iter().zip(&after) {
            assert!((a - 2.5 * b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs 2.5 × {b}");
        }
        assert!(scaled.embed.val().is_require_grad() && scaled.w_out.val().is_require_grad());
    }
}
