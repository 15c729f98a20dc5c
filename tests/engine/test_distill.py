"""FeatureDistiller: relative error of student vs. teacher maps, whatever their scale."""
import torch
import torch.nn.functional as F

from mutualnet_mm.engine import FeatureDistiller


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
