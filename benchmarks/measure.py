"""The measures the benchmarks print: how close a result is to its painting and its photo.

All three are computed by one fixed judge network (Caffe VGG19 as trained, max pooling),
whatever network the run itself used, on the images at the result's size. They are squared
relative errors, so that they read on the same scale as the published reproduction of the
paper's Fig. 3 by jcjohnson/neural-style (its four pictures score style 0.06-0.08, colour
0.01-0.08, content 0.53-1.33 on these definitions):

- style_err: relative squared Gram error sum (G(x) - G(s))^2 / sum G(s)^2, Gram matrices
  divided by the number of positions, averaged over conv1_1 ... conv5_1 (0 = the
  painting's textures);
- content_err: relative squared feature error at conv4_2 (0 = the photo);
- colour_err: the squared Frechet distance between the pixel colours of result and painting
  (each a Gaussian in RGB), divided by the same for the photo: 0 = the painting's palette,
  1 = the photo's. A result that keeps the photo's colours reads as unstylised even when its
  Gram error looks low.

BAND is what "painted as the paper's pictures are" means here: the style and colours of that
reproduction, the photo kept at least as well as its best cases.
"""

from __future__ import annotations

import statistics

import torch

import nst_lib as nst

BAND = {"style_err": 0.12, "colour_err": 0.10, "content_err": 1.0}  # upper bounds


def in_band(scores: dict[str, float]) -> bool:
    """True when every measure of ``scores`` is within :data:`BAND`."""
    return all(scores[k] <= limit for k, limit in BAND.items())


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Squared Frechet distance between Gaussians fitted to the pixel colours of two images.

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2).
    """
    def stats(image):
        pixels = image.reshape(3, -1).double()  # (3, pixels)
        return pixels.mean(1), torch.cov(pixels)

    (mu_a, s_a), (mu_b, s_b) = stats(a), stats(b)
    va, ua = torch.linalg.eigh(s_a)
    root_a = ua @ torch.diag(va.clamp(min=0).sqrt()) @ ua.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    d2 = (mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross
    return d2.clamp(min=0).item()


def judge(image: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> dict[str, float]:
    """Style, colour and content errors of ``image`` (see the module docstring).

    ``content`` must have the result's size; ``style`` may have any size.
    """
    net = nst.vgg19("caffe", pooling="max", device="cpu")
    layers = nst.STYLE_LAYERS + ("conv4_2",)
    with torch.no_grad():
        fx, fc, fs = (net(t, layers) for t in (image, content, style))

        def gram(f):
            return nst.gram_matrix(f) / (f.shape[-1] * f.shape[-2])

        style_err = statistics.mean(
            ((gram(fx[n]) - gram(fs[n])).pow(2).sum() / gram(fs[n]).pow(2).sum()).item()
            for n in nst.STYLE_LAYERS)
        content_err = ((fx["conv4_2"] - fc["conv4_2"]).pow(2).sum()
                       / fc["conv4_2"].pow(2).sum()).item()
    colour_err = frechet(image, style) / max(frechet(content, style), 1e-12)
    return {"style_err": style_err, "colour_err": colour_err, "content_err": content_err}
