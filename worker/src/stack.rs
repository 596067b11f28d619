//! The trial dimension of a pack, for any model whose parameters all have a
//! leading trial dimension: stack K one-trial models into one pack, keep some
//! trials of a pack (the others leave: their rows are gone, not frozen), and
//! take one trial out as a pack of one for evaluation and checkpoints.
//! Parameter ids survive `keep_trials`, so the optimiser's state follows.

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

/// Collects every float parameter's value (inner backend), in visiting order.
struct Collect<B: AutodiffBackend> {
    values: Vec<TensorPrimitive<B::InnerBackend>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.values.push(param.val().inner().into_primitive());
    }
}

/// Concatenates each parameter with the same parameter of the other modules.
struct Concatenate<B: AutodiffBackend> {
    others: Vec<std::vec::IntoIter<TensorPrimitive<B::InnerBackend>>>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Concatenate<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let mut parts = vec![tensor.inner()];
        for other in &mut self.others {
            let value = other.next().expect("modules of one configuration have the same parameters");
            parts.push(Tensor::from_primitive(value));
        }
        Param::from_mapped_value(id, Tensor::from_inner(Tensor::cat(parts, 0)).require_grad(), mapper)
    }
}

/// One pack from one-trial (or smaller-pack) models of one configuration, in
/// order; the parameter ids are the first model's.
pub(crate) fn stack<B: AutodiffBackend, M: AutodiffModule<B>>(mut models: Vec<M>) -> M {
    assert!(!models.is_empty(), "a pack has at least one trial");
    let first = models.remove(0);
    let mut others = Vec::with_capacity(models.len());
    for model in &models {
        let mut collect = Collect::<B> { values: Vec::new() };
        model.visit(&mut collect);
        others.push(collect.values.into_iter());
    }
    first.map(&mut Concatenate::<B> { others })
}

/// Keeps the rows of the given trials of every parameter.
struct Keep<B: AutodiffBackend> {
    trials: Tensor<B::InnerBackend, 1, Int>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Keep<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let kept = tensor.inner().select(0, self.trials.clone());
        Param::from_mapped_value(id, Tensor::from_inner(kept).require_grad(), mapper)
    }
}

/// The pack without the trials not in `trials` (ascending indices into the pack).
pub(crate) fn keep_trials<B: AutodiffBackend, M: AutodiffModule<B>>(model: M, trials: &[usize], device: &B::Device) -> M {
    let indices: Vec<i64> = trials.iter().map(|&trial| trial as i64).collect();
    let trials = Tensor::from_data(TensorData::new(indices, [trials.len()]), device);
    model.map(&mut Keep::<B> { trials })
}

/// Keep the items at the positions `keep` (ascending), as `keep_trials` keeps trials.
pub(crate) fn keep_items<T>(items: &mut Vec<T>, keep: &[usize]) {
    let mut position = 0;
    items.retain(|_| {
        position += 1;
        keep.contains(&(position - 1))
    });
}

/// Narrows every parameter to one trial.
struct Slice {
    trial: usize,
}

impl<B: Backend> ModuleMapper<B> for Slice {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.narrow(0, self.trial, 1), mapper)
    }
}

/// Trial `trial` of a pack (no autodiff) as a pack of one.
pub(crate) fn one_trial<B: Backend, M: Module<B>>(model: M, trial: usize) -> M {
    model.map(&mut Slice { trial })
}

/// Replaces every parameter by an empty tensor (dimensions 0) with its id.
struct Emptied;

impl<B: Backend> ModuleMapper<B> for Emptied {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let device = tensor.device();
        Param::from_mapped_value(id, Tensor::empty([0; D], &device), mapper)
    }
}

/// `module`, leaving in its place the same module with every parameter
/// empty, which the caller replaces before it is used again. The returned
/// module's parameter values are then held by it alone, so an optimiser step
/// can update them in place on the CPU backends (`crate::optim`) instead of
/// copying them out of a value that another module still holds.
pub(crate) fn take<B: Backend, M: Module<B>>(module: &mut M) -> M {
    let emptied = module.clone().map(&mut Emptied);
    std::mem::replace(module, emptied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend;
    use crate::transformer::TransformerConfig;
    use crate::transformer::model::Transformer;

    #[test]
    fn a_taken_module_keeps_its_values_and_leaves_empty_parameters() {
        let device = Default::default();
        let mut model: Transformer<TestAutodiffBackend> =
            TransformerConfig::new(7).with_d_model(8).with_n_heads(2).with_d_mlp(12).init(&device);
        let before = model.embed.val().into_data();
        let taken = take(&mut model);
        assert_eq!(taken.embed.val().into_data(), before);
        assert_eq!(model.embed.dims(), [0, 0, 0]);
        assert_eq!(model.w_in.dims(), [0, 0, 0]);
        assert_eq!(model.embed.id, taken.embed.id);
    }

    #[test]
    fn stacked_trials_keep_their_values_and_leave_without_a_trace() {
        let device = Default::default();
        let config = |seed| TransformerConfig::new(7).with_d_model(8).with_n_heads(2).with_d_mlp(12).with_seed(seed);
        let singles: Vec<Transformer<TestAutodiffBackend>> = (0..3).map(|seed| config(seed).init(&device)).collect();
        let values = |model: &Transformer<TestAutodiffBackend>| crate::host(model.w_in.val().inner());
        let expected: Vec<Vec<f32>> = singles.iter().map(values).collect();
        let pack = stack(singles);
        assert_eq!(pack.trials(), 3);
        assert!(pack.w_in.val().is_require_grad(), "a stacked pack is trainable");
        for (trial, want) in expected.iter().enumerate() {
            assert_eq!(&crate::host(one_trial(pack.valid(), trial).w_in.val()), want);
        }
        let id = pack.w_in.id;
        let kept = keep_trials(pack, &[0, 2], &device);
        assert_eq!(kept.trials(), 2);
        assert_eq!(kept.w_in.id, id, "parameter ids survive so optimiser state follows");
        assert_eq!(crate::host(kept.w_in.val().inner()), [expected[0].clone(), expected[2].clone()].concat());
    }
}
