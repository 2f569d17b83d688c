"""The paper's losses as pure functions of tensors (Gatys et al. 2016, eq. 1-7).

Notation of the paper: a layer l has N_l filters, each a feature map of M_l = H * W values;
F^l is the (N_l, M_l) matrix of the generated image's responses, P^l the content image's,
A^l the style image's Gram matrix. All functions take feature maps shaped (1, N, H, W).

The definitions are exactly the paper's (sums, not means). Their absolute scale depends on
the image size and on the weights' input range (Caffe's 0-255 features are ~255x larger
than torchvision's), which is why only alpha/beta is meaningful, and only for one network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, NamedTuple

import torch


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 1: L_content = 1/2 * sum_ij (F_ij - P_ij)^2.

    Its gradient (eq. 2) is F - P where F > 0 (through the ReLU, 0 elsewhere).
    """
    return 0.5 * (features - target).pow(2).sum()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Eq. 3: G_ij = sum_k F_ik F_jk, the (N, N) inner products between feature maps.

    ``features``: (1, N, H, W) or (N, H, W). Not normalised: eq. 4 divides by N^2 M^2.
    """
    f = features.reshape(features.shape[-3], -1)  # (N, M)
    return f @ f.t()  # (N, N)


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Eq. 4: E_l = 1 / (4 N^2 M^2) * sum_ij (G_ij - A_ij)^2, written as the paper writes it.

    ``target_gram`` is the style image's Gram matrix A. The style image may have another
    size than the generated image: G and A are both (N, N). Autograd gives the paper's
    eq. 6; :func:`fast_style_layer_loss` is the same loss with eq. 6 written out.
    """
    n = features.shape[-3]
    m = features.shape[-2] * features.shape[-1]
    return (gram_matrix(features) - target_gram).pow(2).sum() / (4 * n**2 * m**2)


def fast_style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """The fast path of :func:`style_layer_loss`: the same value, and the paper's eq. 6,
    1 / (N^2 M^2) * (F^T (G - A))^T where F > 0, as its backward pass
    (:class:`_StyleLayerLoss`: one matrix product instead of autograd's two, and no copy
    between memory orders). A run uses this one by default (:class:`LossFunctions`)."""
    return _StyleLayerLoss.apply(features, target_gram)


class _StyleLayerLoss(torch.autograd.Function):
    """Eq. 4 forward, eq. 6 backward (the "where F > 0" is the ReLU's own backward).

    Written with X = F^T, the (M, N) matrix of positions by filters: G = X^T X and the
    gradient is X (G - A) / (N^2 M^2). For VGG19's feature maps, which are stored
    channels_last (position by position), X is a view, not a copy, and the gradient comes
    back in the same memory order as the features, so the backward pass through the
    network (ReLU, convolution, and the sum with the next layer's gradient) needs no
    conversion between memory orders.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
        n = features.shape[-3]
        m = features.shape[-2] * features.shape[-1]
        positions = features.movedim(-3, -1)  # (..., H, W, N)
        x = positions.reshape(m, n)  # X = F^T, (M, N)
        diff = x.t() @ x - target_gram  # G - A, (N, N), symmetric
        ctx.save_for_backward(x, diff)
        ctx.shape = positions.shape
        return diff.pow(2).sum() / (4 * n**2 * m**2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, diff = ctx.saved_tensors
        m, n = x.shape
        # eq. 6, transposed: (M, N); the factor scales the small (N, N) matrix, not the result
        grad_x = x @ (diff * (grad / (n**2 * m**2)))
        # no gradient for A (it is a fixed target)
        return grad_x.reshape(ctx.shape).movedim(-1, -3), None


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
) -> torch.Tensor:
    """Eq. 5: L_style = sum_l w_l E_l over the layers named in ``weights``."""
    return sum(w * style_layer_loss(features[name], target_grams[name])
               for name, w in weights.items())


def total_loss(
    content: torch.Tensor, style: torch.Tensor, *, alpha: float, beta: float
) -> torch.Tensor:
    """Eq. 7: L_total = alpha * L_content + beta * L_style."""
    return alpha * content + beta * style



class LossFunctions(NamedTuple):
    """The functions a run computes its loss with (:class:`nst_lib.Targets`), by default
    these of the library. Give your own, with the same arguments, to see your code paint:
    ``nst.transfer(photo, painting, functions=nst.LossFunctions(content_loss=mine))``."""

    content_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = content_loss
    gram_matrix: Callable[[torch.Tensor], torch.Tensor] = gram_matrix
    style_layer_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = fast_style_layer_loss
    total_loss: Callable[..., torch.Tensor] = total_loss
