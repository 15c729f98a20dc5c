"""mmengine train loops for mutual learning: the full network and its cohort each iteration."""
from typing import Optional

from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..models.wrappers import unwrap
from .eta import MutualEtaHook
from .hooks import TorchRandomStateHook
from .mutual_step import MutualTrainStep, check_trainable_norms, pass_names


def _loss_sum(sampler) -> str:
    """``loss_full + loss_mid1 + ... + loss_min``: what the logged ``loss`` sums."""
    return ' + '.join(pass_names(sampler.num_subnets))


def register_eta_hook(runner) -> None:
    """Give the runner a :class:`MutualEtaHook` (once)."""
    if not any(isinstance(hook, MutualEtaHook) for hook in runner.hooks):
        runner.register_hook(MutualEtaHook())


class _MutualTrainMixin:
    """Replaces the single-pass ``train_step`` with :class:`MutualTrainStep`."""

    def _build_mutual_step(self, mutual: Optional[dict]) -> None:
        model = self.runner.model
        check_trainable_norms(unwrap(model))
        self.mutual_step = MutualTrainStep.from_config(
            mutual, model, seed=self.runner.seed or 0,
            max_iters=self.max_iters)
        if not any(isinstance(hook, TorchRandomStateHook) for hook in self.runner.hooks):
            self.runner.register_hook(TorchRandomStateHook())  # exact resume
        register_eta_hook(self.runner)
        sampler = self.mutual_step.sampler
        print_log(f'mutual learning: {sampler.num_subnets} configurations per iteration, '
                  f'width range {sampler.width_range}, scales {sampler.scales}'
                  + (f', frames {sampler.frames}' if sampler.frames else '')
                  + (f', the full configuration alone for the first '
                     f'{sampler.full_only_iters} iterations' if sampler.full_only_iters else '')
                  + (f', distillation {type(self.mutual_step.distiller).__name__}'
                     if self.mutual_step.distiller else '')
                  + f'; the logged loss is the sum over the passes ({_loss_sum(sampler)}'
                  + ('; loss_full alone in the warm-up' if sampler.full_only_iters else '')
                  + ')', logger='current')

    def _mutual_iter(self, batch_idx: int, data_batch) -> None:
        sampler = self.mutual_step.sampler
        if self._iter == sampler.full_only_iters > 0:
            print_log(f'iteration {self._iter + 1}: the warm-up of {sampler.full_only_iters} '
                      f'iterations is over, the cohort of {sampler.num_subnets - 1} narrower '
                      f'configurations joins: the logged loss is now the sum over '
                      f'{sampler.num_subnets} passes ({_loss_sum(sampler)})', logger='current')
        self.runner.call_hook('before_train_iter', batch_idx=batch_idx, data_batch=data_batch)
        outputs = self.mutual_step(self.runner.model, data_batch, self.runner.optim_wrapper,
                                   self._iter)
        self.runner.call_hook('after_train_iter', batch_idx=batch_idx,
                              data_batch=data_batch, outputs=outputs)
        self._iter += 1


@LOOPS.register_module()
class MutualEpochBasedTrainLoop(_MutualTrainMixin, EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` whose every iteration trains a cohort of configurations.

    Args:
        mutual: The mutual-learning settings (see :meth:`MutualTrainStep.from_config`).
        **kwargs: ``EpochBasedTrainLoop`` arguments.
    """

    def __init__(self, runner, dataloader, max_epochs: int, mutual: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(runner, dataloader, max_epochs, **kwargs)
        self._build_mutual_step(mutual)

    def run_epoch(self) -> None:
        """Iterate one epoch; resumed mid-epoch, skip the batches the checkpoint has seen.

        mmengine's epoch loop restarts the epoch from its first batch when a checkpoint
        was saved mid-epoch (``CheckpointHook(by_epoch=False)``), training its first
        batches twice and running more iterations than planned. The skipped batches are
        still loaded, so the data pipeline's random draws stay in step.
        """
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        trained = max(0, self._iter - self._epoch * len(self.dataloader))
        for idx, data_batch in enumerate(self.dataloader):
            if idx >= trained:
                self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx, data_batch) -> None:
        self._mutual_iter(idx, data_batch)


@LOOPS.register_module()
class MutualIterBasedTrainLoop(_MutualTrainMixin, IterBasedTrainLoop):
    """``IterBasedTrainLoop`` whose every iteration trains a cohort of configurations."""

    def __init__(self, runner, dataloader, max_iters: int, mutual: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(runner, dataloader, max_iters, **kwargs)
        self._build_mutual_step(mutual)

    def run_iter(self, data_batch) -> None:
        self._mutual_iter(self._iter, data_batch)


__all__ = ['MutualEpochBasedTrainLoop', 'MutualIterBasedTrainLoop', 'register_eta_hook']
