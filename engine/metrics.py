"""Image quality metrics (the NeRF-Synthetic conventions): PSNR over all channels, SSIM with an 11x11 Gaussian
window (sigma 1.5), averaged over channels and pixels, images in [0,1]."""
from __future__ import annotations

import math

import torch


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """image, reference: float [H,W,3] in [0,1] -> dB (capped at 100 for identical images)."""
    mse = torch.mean((image.float() - reference.float()) ** 2).item()
    return 100.0 if mse <= 1e-10 else -10.0 * math.log10(mse)


def ssim(image: torch.Tensor, reference: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity of two float [H,W,3] images in [0,1] (valid-region filtering, as in the NeRF papers)."""
    x = image.float().permute(2, 0, 1)[None]
    y = reference.float().permute(2, 0, 1)[None]
    c = x.shape[1]
    coords = torch.arange(window, dtype=torch.float32, device=x.device) - (window - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, kernel, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.mean().item()
