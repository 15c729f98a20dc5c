"""Slimmable layers on a CUDA GPU: kept slices follow the layer from device to device."""
import torch
import torch.nn.functional as F

from mutualnet_mm.ops import SlimmableBatchNorm2d, SlimmableConv2d, SlimmableLinear

from ..cuda import CUDA

pytestmark = CUDA


def test_kept_slices_follow_moves_between_devices() -> None:
    torch.manual_seed(0)
    conv, linear = SlimmableConv2d(8, 8, 3), SlimmableLinear(8, 6)
    conv.set_active_out_channels(4)
    linear.set_active_out_channels(3)
    norm = SlimmableBatchNorm2d(8).eval()
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
    x, y = torch.randn(1, 4, 5, 5), torch.randn(2, 5)
    with torch.no_grad():
        on_cpu = conv(x), linear(y), norm(x)  # slices kept on the CPU
        for device in ('cuda', 'cpu', 'cuda'):
            for layer in (conv, linear, norm):
                layer.to(device)
            got = conv(x.to(device)), linear(y.to(device)), norm(x.to(device))
            for out, want in zip(got, on_cpu):
                assert out.device.type == device
                torch.testing.assert_close(out.cpu(), want, rtol=1e-5, atol=1e-5)


def test_kept_slices_on_cuda_follow_in_place_changes() -> None:
    torch.manual_seed(0)
    conv = SlimmableConv2d(8, 8, 3).cuda()
    conv.set_active_out_channels(4)
    x = torch.randn(1, 4, 5, 5, device='cuda')
    with torch.no_grad():
        conv(x)
        conv.weight.mul_(-2.0)
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight[:4, :4], conv.bias[:4]))
