"""In-place distillation: sub-networks learn from the full configuration's outputs.

A distiller names the submodule whose output it compares (captured with a forward hook
during the pass), and says whether sub-networks also keep their ground-truth losses.
"""
import inspect
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import MUTUAL, build_component


class Distiller:
    """Base class: capture a submodule's output and compare student with teacher.

    Args:
        module: Dotted name of the submodule whose output is distilled.
        weight: Weight of the distillation loss.
        label_loss: Whether sub-networks keep their ground-truth losses too.
    """

    def __init__(self, module: str, weight: float = 1.0, label_loss: bool = True) -> None:
        self.module = module
        self.weight = weight
        self.label_loss = label_loss

    def _target(self, model: nn.Module) -> nn.Module:
        try:
            return model.get_submodule(self.module)
        except AttributeError:
            raise ValueError(f'distill.module {self.module!r} is not a submodule of '
                             f'{type(model).__name__}') from None

    @contextmanager
    def capture(self, model: nn.Module) -> Iterator[List[Any]]:
        """Record the output of ``model.<module>`` during the ``with`` block."""
        target = self._target(model)
        outputs: List[Any] = []
        handle = target.register_forward_hook(lambda _m, _i, out: outputs.append(out))
        try:
            yield outputs
        finally:
            handle.remove()

    @contextmanager
    def without_label_loss(self, model: nn.Module) -> Iterator[None]:
        """Within the block, ``model.<module>.loss`` runs the module's forward only and
        reports no loss: the output :meth:`capture` records, without label losses.

        The OpenMMLab heads' ``loss(feats, data_samples)`` is their forward followed by the
        label loss. A module without a ``loss`` method (e.g. a neck) is left as it is.
        """
        target = self._target(model)
        if not inspect.ismethod(getattr(target, 'loss', None)):
            yield
            return

        def forward_only(feats: Any, data_samples: Any = None, **kwargs) -> Dict[str, Tensor]:
            target(feats, **kwargs)
            return {}

        target.loss = forward_only
        try:
            yield
        finally:
            del target.loss

    def loss(self, student: Any, teacher: Any) -> Tensor:
        """The weighted distillation loss of one sub-network."""
        raise NotImplementedError


def _tensors(output: Any) -> List[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    return [t for item in output for t in _tensors(item)]


@MUTUAL.register_module()
class LogitDistiller(Distiller):
    """``KL(teacher || student)`` on class logits, as in MutualNet classification.

    Args:
        module: The classification head (default ``'cls_head'``).
        temperature: Softmax temperature (the loss is scaled by its square).
        weight: Loss weight.
        label_loss: Sub-networks keep their label loss too (default False: as in the
            reference, they learn from the full network only).
    """

    def __init__(self, module: str = 'cls_head', temperature: float = 1.0,
                 weight: float = 1.0, label_loss: bool = False) -> None:
        super().__init__(module, weight, label_loss)
        if temperature <= 0:
            raise ValueError(f'temperature must be positive, got {temperature!r}')
        self.temperature = temperature

    def loss(self, student: Any, teacher: Any) -> Tensor:
        (student,), (teacher,) = _tensors(student)[:1], _tensors(teacher)[:1]
        t = self.temperature
        kl = F.kl_div(F.log_softmax(student / t, dim=-1), F.softmax(teacher / t, dim=-1),
                      reduction='batchmean')
        return self.weight * kl * t * t


@MUTUAL.register_module()
class FeatureDistiller(Distiller):
    """Relative squared error between student and teacher feature maps (e.g. the FPN).

    Teacher maps are resized to the student's spatial size (bilinear) and cut to the
    student's channels (a slimmed neck runs a prefix of the full channels). Each map's
    error is divided by the teacher map's mean square, so the loss does not depend on the
    features' scale: a plain MSE on unnormalized FPN features grew from 1.2 to 6e4 within
    three epochs of the demo, its gradients swamping the detection losses.

    Args:
        module: The module whose (tuple of) feature maps is compared (default 'neck').
        weight: Loss weight.
        label_loss: Sub-networks keep their detection losses too (default True).
        eps: Added to the teacher's mean square.
    """

    def __init__(self, module: str = 'neck', weight: float = 1.0,
                 label_loss: bool = True, eps: float = 1e-6) -> None:
        super().__init__(module, weight, label_loss)
        self.eps = eps

    def loss(self, student: Any, teacher: Any) -> Tensor:
        losses = []
        for s, t in zip(_tensors(student), _tensors(teacher)):
            t = t[:, :s.shape[1]]
            if t.shape[-2:] != s.shape[-2:]:
                t = F.interpolate(t, size=s.shape[-2:], mode='bilinear', align_corners=False)
            losses.append(F.mse_loss(s, t) / (t.pow(2).mean() + self.eps))
        return self.weight * torch.stack(losses).mean()


@MUTUAL.register_module()
class RPNOutputDistiller(Distiller):
    """The full configuration's region proposals taught to the sub-networks.

    Compares the RPN head's outputs per pyramid level: objectness as the binary cross
    entropy of the student's logits against the teacher's probabilities (teacher maps
    resized bilinearly to the student's size), and, where the student ran at the
    teacher's input size, box deltas as a smooth-L1 loss weighted by the teacher's
    objectness (deltas are relative to anchors, whose size in pixels does not follow the
    input scale, so they are not compared across scales). The RoI heads' outputs are not
    distilled: each pass samples its own proposals, so teacher and student score
    different boxes.

    Args:
        module: The RPN head (default ``'rpn_head'``); its forward returns
            ``(objectness per level, deltas per level)``.
        weight: Loss weight.
        label_loss: Sub-networks keep their detection losses too (default True).
    """

    def __init__(self, module: str = 'rpn_head', weight: float = 1.0,
                 label_loss: bool = True) -> None:
        super().__init__(module, weight, label_loss)

    def loss(self, student: Any, teacher: Any) -> Tensor:
        (student_scores, student_deltas), (teacher_scores, teacher_deltas) = student, teacher
        losses = []
        for s_score, s_delta, t_score, t_delta in zip(student_scores, student_deltas,
                                                      teacher_scores, teacher_deltas):
            same_size = t_score.shape[-2:] == s_score.shape[-2:]
            if not same_size:
                t_score = F.interpolate(t_score, size=s_score.shape[-2:], mode='bilinear',
                                        align_corners=False)
            probability = t_score.sigmoid()
            loss = F.binary_cross_entropy_with_logits(s_score, probability)
            if same_size:
                weight = probability.repeat_interleave(s_delta.shape[1] // s_score.shape[1],
                                                       dim=1)
                error = F.smooth_l1_loss(s_delta, t_delta, reduction='none', beta=1 / 9)
                loss = loss + (error * weight).sum() / weight.sum().clamp(min=1.0)
            losses.append(loss)
        return self.weight * torch.stack(losses).mean()


def build_distiller(cfg) -> Distiller:
    """Build a distiller from a config dict; ``None`` or ``False`` means none."""
    if not cfg:
        return None
    return build_component(cfg) if isinstance(cfg, dict) else cfg
