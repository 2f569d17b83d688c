import pytest
import torch

import nst_lib as nst
from nst_lib import color


@pytest.fixture
def photo():
    g = torch.Generator().manual_seed(7)
    base = torch.rand(1, 3, 1, 1, generator=g)  # a colour cast, so the channels correlate
    return (0.6 * base + 0.4 * torch.rand(1, 3, 24, 32, generator=g)).clamp(0, 1)


def _mean_cov(image):
    x = image.reshape(3, -1).double()
    d = x - x.mean(dim=1, keepdim=True)
    return x.mean(dim=1), d @ d.t() / d.shape[1]


def test_yiq_round_trip_is_the_identity(photo):
    assert torch.allclose(color.yiq_to_rgb(color.rgb_to_yiq(photo)), photo, atol=1e-6)


def test_yiq_of_known_colours():
    white = torch.ones(1, 3, 1, 1)
    assert torch.allclose(color.rgb_to_yiq(white).flatten(), torch.tensor([1.0, 0, 0]), atol=1e-5)
    red = torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)
    assert color.rgb_to_yiq(red).flatten()[0].item() == pytest.approx(0.299)


def test_luminance_is_grey_with_no_chroma(photo):
    grey = color.luminance(photo)
    assert grey.shape == photo.shape
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert color.rgb_to_yiq(grey)[:, 1:].abs().max() < 1e-6


def test_match_luminance_gives_the_contents_mean_and_spread(photo):
    style = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1)) * 0.3
    matched = color.match_luminance(style, photo)
    target = color.luminance(photo)
    assert matched.mean().item() == pytest.approx(target.mean().item(), abs=1e-5)
    assert matched.std().item() == pytest.approx(target.std().item(), rel=1e-3)


@pytest.mark.parametrize("method", ["cholesky", "eigen"])
def test_match_color_gives_the_targets_mean_and_covariance(photo, method):
    style = torch.rand(1, 3, 30, 20, generator=torch.Generator().manual_seed(3)) ** 2
    matched = color.match_color(style, photo, method=method, eps=0.0)
    mu, cov = _mean_cov(matched)
    mu_t, cov_t = _mean_cov(photo)
    assert matched.shape == style.shape
    assert torch.allclose(mu, mu_t, atol=1e-6)
    assert torch.allclose(cov, cov_t, atol=1e-6)


def test_match_color_works_for_a_grey_source(photo):
    grey = color.luminance(photo)  # covariance of rank 1
    matched = color.match_color(grey, photo)
    assert torch.isfinite(matched).all()
    assert torch.allclose(_mean_cov(matched)[0], _mean_cov(photo)[0], atol=1e-5)


def test_match_color_rejects_an_unknown_method(photo):
    with pytest.raises(ValueError, match="cholesky"):
        color.match_color(photo, photo, method="lab")


def test_combine_luminance_keeps_the_contents_chroma(photo):
    grey = color.luminance(torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(5)))
    out = color.combine_luminance(grey, photo)
    yiq_out, yiq_photo = color.rgb_to_yiq(out), color.rgb_to_yiq(photo)
    inside = (out > 0).all(1) & (out < 1).all(1)  # pixels that clamping left alone
    assert inside.float().mean() > 0.5
    assert torch.allclose(yiq_out[:, 1:][inside.unsqueeze(1).expand(-1, 2, -1, -1)],
                          yiq_photo[:, 1:][inside.unsqueeze(1).expand(-1, 2, -1, -1)], atol=1e-5)
    assert torch.allclose(yiq_out[:, :1][inside.unsqueeze(1)], grey[:, :1][inside.unsqueeze(1)],
                          atol=1e-5)


def _fake_runner(calls):
    """Stands in for nst.transfer: records its inputs, returns the content image."""

    def run(content, style, config=None, **kwargs):
        calls.append((content, style, config, kwargs))
        return nst.Result(image=content.clone(), config=config)

    return run


def test_transfer_preserving_color_luminance_runs_on_grey_images(photo):
    calls = []
    style = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    result = color.transfer_preserving_color(photo, style, method="luminance",
                                             runner=_fake_runner(calls), size=32, steps=2)
    content, styles, config, _ = calls[0]
    for image in [content, *styles]:
        assert color.rgb_to_yiq(image)[:, 1:].abs().max() < 1e-5  # VGG sees luminance only
    # the fake transfer returns the grey photo: putting the colours back gives the photo
    assert torch.allclose(result.image, photo, atol=1e-5)


def test_transfer_preserving_color_histogram_recolours_the_style(photo):
    calls = []
    style = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.5
    color.transfer_preserving_color(photo, style, nst.Config(size=32), method="histogram",
                                    runner=_fake_runner(calls))
    content, styles, config, _ = calls[0]
    assert torch.equal(content, photo)
    mu, _ = _mean_cov(styles[0])
    assert torch.allclose(mu, _mean_cov(photo)[0], atol=0.02)  # only clamping moves it
    assert config.size == 32


def test_transfer_preserving_color_end_to_end(random_model, tiny):
    content, style = tiny
    result = color.transfer_preserving_color(content, style, model=random_model, size=32,
                                             steps=2, scales=1, progress=False, init="noise")
    assert result.image.shape == (1, 3, 21, 32) and len(result.history) == 2
    out, photo = color.rgb_to_yiq(result.image), color.rgb_to_yiq(nst.resize(content, 32))
    inside = ((result.image > 0) & (result.image < 1)).all(1, keepdim=True)  # not clamped
    assert inside.float().mean() > 0.8
    chroma = (out[:, 1:] - photo[:, 1:]).abs()
    assert chroma[inside.expand_as(chroma)].max() < 1e-5  # the photo's colours ...
    assert (out[:, :1] - photo[:, :1]).abs().mean() > 0.05  # ... on the new, grey picture
    with pytest.raises(ValueError, match="luminance"):
        color.transfer_preserving_color(content, style, method="hsv", model=random_model)
