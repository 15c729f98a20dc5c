"""Distillers: FeatureDistiller (relative error of maps, whatever their scale) and
RPNOutputDistiller (objectness everywhere, box deltas at the teacher's size)."""
import torch
import torch.nn.functional as F

from mutualnet_mm.engine import FeatureDistiller, RPNOutputDistiller


def maps(seed: int, channels: int, size: int) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, channels, size // 2**i, size // 2**i, generator=generator)
                 for i in range(3))


def test_feature_loss_is_the_mean_relative_error_per_level() -> None:
    teacher, student = maps(0, 16, 16), maps(1, 8, 8)  # slimmed and at half the scale
    expected = []
    for s, t in zip(student, teacher):
        t = F.interpolate(t[:, :8], size=s.shape[-2:], mode='bilinear', align_corners=False)
        expected.append(((s - t) ** 2).mean() / (t ** 2).mean())
    loss = FeatureDistiller(weight=0.5).loss(student, teacher)
    torch.testing.assert_close(loss, 0.5 * torch.stack(expected).mean())


def test_feature_loss_does_not_grow_with_the_features() -> None:
    teacher, student = maps(0, 8, 16), maps(1, 8, 16)
    distiller = FeatureDistiller()
    base = distiller.loss(student, teacher)
    scaled = distiller.loss(tuple(1e3 * s for s in student), tuple(1e3 * t for t in teacher))
    torch.testing.assert_close(scaled, base)
    assert distiller.loss(teacher, teacher) == 0


def rpn_outputs(seed: int, size: int, anchors: int = 3) -> tuple:
    """``(objectness per level, deltas per level)`` as an RPN head returns them."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [size // 2**i for i in range(3)]
    return ([torch.randn(2, anchors, s, s, generator=generator) for s in sizes],
            [torch.randn(2, 4 * anchors, s, s, generator=generator) for s in sizes])


def test_rpn_loss_is_least_where_the_student_matches_the_teacher() -> None:
    teacher = rpn_outputs(0, 16)
    student = tuple([t.clone().requires_grad_() for t in part] for part in teacher)
    distiller = RPNOutputDistiller(weight=2.0)
    loss = distiller.loss(student, teacher)
    loss.backward()
    for tensor in student[0] + student[1]:
        assert tensor.grad.abs().max() < 1e-6  # a minimum: the teacher's own outputs
    other = rpn_outputs(1, 16)
    assert distiller.loss(other, teacher) > loss
    # objectness alone: the binary cross entropy against the teacher's probabilities
    expected = torch.stack([F.binary_cross_entropy_with_logits(t, t.sigmoid())
                            for t in teacher[0]]).mean() * 2.0
    torch.testing.assert_close(loss, expected)


def test_rpn_deltas_are_compared_only_at_the_teachers_size() -> None:
    teacher, student = rpn_outputs(0, 16), rpn_outputs(1, 8)  # half the input scale
    distiller = RPNOutputDistiller()
    shuffled = (student[0], [torch.randn_like(d) for d in student[1]])
    assert distiller.loss(student, teacher) == distiller.loss(shuffled, teacher)
    same_size = rpn_outputs(2, 16)
    changed = (same_size[0], [d + 1.0 for d in same_size[1]])
    assert distiller.loss(changed, teacher) != distiller.loss(same_size, teacher)
