import pytest
import torch

import nst_lib as nst


def test_gram_of_ones_is_number_of_positions():
    f = torch.ones(1, 3, 4, 5)  # N=3 maps, M=20 positions
    assert torch.equal(nst.gram_matrix(f), torch.full((3, 3), 20.0))


def test_gram_matches_hand_computed_values():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # F = [[1, 2], [3, 4]]
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]])  # F F^T
    assert torch.equal(nst.gram_matrix(f), expected)


def test_gram_ignores_spatial_arrangement():
    f = torch.rand(1, 4, 6, 7)
    perm = torch.randperm(42)
    shuffled = f.flatten(2)[..., perm].view(1, 4, 6, 7)
    assert torch.allclose(nst.gram_matrix(f), nst.gram_matrix(shuffled))


def test_content_loss_value_and_gradient_match_eq_1_and_2():
    F = torch.rand(1, 8, 5, 6, requires_grad=True)
    P = torch.rand(1, 8, 5, 6)
    loss = nst.content_loss(F, P)
    assert torch.allclose(loss, 0.5 * ((F - P) ** 2).sum())
    loss.backward()
    assert torch.allclose(F.grad, (F - P).detach())  # eq. 2 (F > 0 everywhere here)


def test_style_layer_loss_gradient_matches_eq_6():
    n, h, w = 6, 4, 5
    m = h * w
    F = torch.rand(1, n, h, w, dtype=torch.float64, requires_grad=True)
    A = nst.gram_matrix(torch.rand(1, n, 7, 3, dtype=torch.float64))  # style of another size
    E = nst.fast_style_layer_loss(F, A)
    G = nst.gram_matrix(F).detach()
    Fm = F.detach().view(n, m)
    assert torch.allclose(E, ((G - A) ** 2).sum() / (4 * n**2 * m**2))  # eq. 4
    E.backward()
    analytic = (Fm.t() @ (G - A)).t() / (n**2 * m**2)  # eq. 6
    assert torch.allclose(F.grad.view(n, m), analytic)


def test_style_layer_loss_gradient_matches_finite_differences_and_autograd():
    F = torch.rand(1, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    A = nst.gram_matrix(torch.rand(1, 5, 6, 2, dtype=torch.float64))
    assert torch.autograd.gradcheck(nst.fast_style_layer_loss, (F, A))
    # the fast path has the plain eq. 4's value and autograd gradient, also for
    # channels_last maps
    X = torch.rand(1, 16, 6, 7).to(memory_format=torch.channels_last).requires_grad_(True)
    B = nst.gram_matrix(torch.rand(1, 16, 5, 5))
    fast = nst.fast_style_layer_loss(X, B)
    fast.backward()
    Y = X.detach().clone().requires_grad_(True)
    plain = nst.style_layer_loss(Y, B)
    plain.backward()
    assert torch.allclose(fast, plain) and torch.allclose(X.grad, Y.grad, rtol=1e-4, atol=1e-9)


def test_style_layer_loss_matches_a_hand_computed_value():
    # F = [[1, 2], [0, 1]] (N=2 maps, M=2 positions): G = [[5, 2], [2, 1]]; A = I
    F = torch.tensor([[1.0, 2.0], [0.0, 1.0]]).view(1, 2, 1, 2)
    # sum (G - A)^2 = 16 + 4 + 4 + 0 = 24; / (4 * 2^2 * 2^2) = 24 / 64
    for loss in (nst.style_layer_loss, nst.fast_style_layer_loss):
        assert loss(F, torch.eye(2)).item() == pytest.approx(24 / 64)


def test_style_gradient_of_channels_last_maps_comes_back_channels_last():
    # VGG19's maps are channels_last; a gradient in the other memory order would be
    # converted at every ReLU, convolution and sum of the backward pass
    image = torch.rand(1, 3, 12, 10).contiguous(memory_format=torch.channels_last)
    maps = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)(image)
    assert maps.is_contiguous(memory_format=torch.channels_last)
    (grad,) = torch.autograd.grad(nst.fast_style_layer_loss(maps, torch.eye(8)), maps)
    assert grad.is_contiguous(memory_format=torch.channels_last)


def test_gradient_through_relu_is_zero_where_the_response_is_zero():
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    P = torch.rand(1, 4, 5, 5)
    nst.content_loss(torch.relu(x), P).backward()
    F = torch.relu(x.detach())
    assert torch.allclose(x.grad, torch.where(x.detach() > 0, F - P, torch.zeros_like(P)))


def test_style_loss_weights_layers_and_total_loss_is_eq_7():
    feats = {"a": torch.rand(1, 3, 4, 4), "b": torch.rand(1, 5, 2, 2)}
    grams = {"a": torch.zeros(3, 3), "b": torch.zeros(5, 5)}
    Ea = nst.style_layer_loss(feats["a"], grams["a"])
    Eb = nst.style_layer_loss(feats["b"], grams["b"])
    Ls = nst.style_loss(feats, grams, {"a": 0.25, "b": 2.0})
    assert torch.allclose(Ls, 0.25 * Ea + 2.0 * Eb)
    assert torch.allclose(nst.style_loss(feats, grams, {"b": 1.0}), Eb)  # only the named layers
    total = nst.total_loss(torch.tensor(3.0), torch.tensor(5.0), alpha=2.0, beta=10.0)
    assert total.item() == 56.0
