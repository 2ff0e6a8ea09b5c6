"""Metrics: per-image reconstruction metrics on images in [-1, 1] (see pti_lab.metrics.image)."""

from pti_lab.metrics.image import lpips, ms_ssim, mse, psnr, reconstruction_metrics, ssim

__all__ = ["lpips", "ms_ssim", "mse", "psnr", "reconstruction_metrics", "ssim"]
