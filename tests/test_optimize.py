import threading

import pytest
import torch

import nst_lib as nst

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAST = dict(size=None, steps=8, scales=1, device="cpu", weights="random", precision="float32")


def test_a_few_lbfgs_steps_lower_the_loss(random_model, tiny):
    content, style = tiny
    result = nst.transfer(content, style, model=random_model, progress=False,
                          **{**FAST, "init": "noise"})
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 8 and losses[-1] < 0.5 * losses[0]
    assert result.image.shape == content.shape and result.stop_reason == "steps"
    assert set(result.history[0]["layers"]) == {"conv4_2", *nst.STYLE_LAYERS}


def test_adam_lowers_the_loss_too(random_model, tiny):
    content, style = tiny
    result = nst.transfer(content, style, model=random_model, progress=False,
                          **{**FAST, "optimizer": "adam", "init": "noise", "steps": 20})
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_content_and_style_reconstruction_use_one_term_each(random_model, tiny):
    content, style = tiny
    r = nst.reconstruct_content(content, "conv2_2", model=random_model, progress=False, **FAST)
    assert set(r.history[0]["layers"]) == {"conv2_2"} and r.history[0]["style"] == 0
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    r = nst.reconstruct_style(style, ["conv1_1", "conv2_1"], model=random_model, progress=False,
                              **FAST)
    assert set(r.history[0]["layers"]) == {"conv1_1", "conv2_1"} and r.image.shape == style.shape


def test_one_layer_name_is_one_layer_not_its_letters(random_model, tiny):
    content, style = tiny
    r = nst.reconstruct_style(style, "conv2_1", model=random_model, progress=False, **FAST)
    assert set(r.history[0]["layers"]) == {"conv2_1"} and r.config.style_layers == ("conv2_1",)
    r = nst.reconstruct_content(content, ["conv3_1"], model=random_model, progress=False, **FAST)
    assert r.config.content_layers == ("conv3_1",)
    r = nst.transfer(content, style, model=random_model, progress=False, style_layers="conv1_1",
                     **FAST)
    assert set(r.history[0]["layers"]) == {"conv4_2", "conv1_1"}


@pytest.mark.parametrize("layers, message", [
    (dict(style_layers=()), "style_layers is empty, so the style image would be ignored"),
    (dict(content_layers=""), "content_layers is empty, so the content image would be ignored"),
])
def test_an_empty_list_of_layers_for_a_given_image_is_an_error_in_words(random_model, tiny,
                                                                       layers, message):
    with pytest.raises(ValueError, match=message):
        nst.transfer(*tiny, model=random_model, progress=False, **{**FAST, **layers})


def test_same_seed_same_result(random_model, tiny):
    content, style = tiny
    kw = dict(model=random_model, progress=False, **{**FAST, "init": "noise"})
    a = nst.transfer(content, style, seed=3, **kw).image
    b = nst.transfer(content, style, seed=3, **kw).image
    c = nst.transfer(content, style, seed=4, **kw).image
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_targets_are_computed_once_per_run(random_model, tiny):
    content, style = tiny
    calls = []
    hook = random_model.register_forward_pre_hook(lambda m, args: calls.append(1))
    try:
        result = nst.transfer(content, style, model=random_model, progress=False, **FAST)
    finally:
        hook.remove()
    assert len(calls) == len(result.history) + 2  # content + style targets, then one per step


def test_callback_gets_every_step_and_the_image_every_k(random_model, tiny):
    content, style = tiny
    steps = []
    nst.transfer(content, style, model=random_model, progress=False, callback=steps.append,
                 image_every=3, **FAST)
    assert [s.step for s in steps] == list(range(1, 9))
    assert [s.step for s in steps if s.image is not None] == [3, 6]


def test_interrupt_returns_the_image_so_far_with_its_history(random_model, tiny):
    content, style = tiny

    def ctrl_c(step):
        if step.step == 4:
            raise KeyboardInterrupt

    r = nst.transfer(content, style, model=random_model, progress=False, callback=ctrl_c,
                     **{**FAST, "init": "noise"})
    assert r.stop_reason == "interrupted" and r.interrupted and len(r.history) == 4
    assert r.image.shape == content.shape and r.image.std() > 0.01  # not a blank image


def test_stop_event_ends_the_run(random_model, tiny):
    content, style = tiny
    stop = threading.Event()
    r = nst.transfer(content, style, model=random_model, progress=False, stop=stop,
                     callback=lambda s: s.step == 2 and stop.set(), **FAST)
    assert r.stop_reason == "stopped" and len(r.history) == 2


def test_time_limit_and_convergence_stop_early(random_model, tiny):
    content, style = tiny
    r = nst.transfer(content, style, model=random_model, progress=False,
                     **{**FAST, "steps": 1000, "time_limit": 0.0})
    assert r.stop_reason == "time" and len(r.history) == 1
    r = nst.transfer(content, style, model=random_model, progress=False,
                     **{**FAST, "steps": 1000, "tol": 1.0})
    assert r.stop_reason == "converged" and 21 <= len(r.history) < 1000


def test_divergence_keeps_the_last_finite_image(random_model, tiny):
    content, style = tiny
    with pytest.warns(UserWarning, match="stopped and kept the last finite image"):
        r = nst.transfer(content, style, model=random_model, progress=False,
                         **{**FAST, "optimizer": "adam", "lr": 1e30, "steps": 50})
    assert r.stop_reason == "diverged"
    assert torch.isfinite(r.image).all() and r.image.std() > 0.01


def test_coarse_to_fine_ends_at_full_size(random_model, tiny):
    content, style = torch.rand(1, 3, 96, 128), tiny[1]
    r = nst.transfer(content, style, model=random_model, progress=False,
                     **{**FAST, "scales": 2, "steps": 4})
    assert [h["scale"] for h in r.history] == [0] * 4 + [1] * 4
    assert r.image.shape == content.shape
    # levels whose longest side would fall below 64 px are left out
    r = nst.transfer(content, style, model=random_model, progress=False,
                     **{**FAST, "scales": 3, "steps": 2})
    assert [h["scale"] for h in r.history] == [0] * 2 + [1] * 2


def test_channels_last_images_are_accepted(random_model, tiny):
    content = tiny[0].contiguous(memory_format=torch.channels_last)
    r = nst.transfer(content, tiny[1], model=random_model, progress=False, **FAST)
    plain = nst.transfer(tiny[0], tiny[1], model=random_model, progress=False, **FAST)
    assert r.image.shape == content.shape
    assert torch.allclose(r.image, plain.image, atol=1e-4)  # the same run as a contiguous one


def test_content_and_style_of_different_sizes_and_aspect_ratios(random_model):
    content = torch.rand(1, 3, 20, 64)  # wide
    style = torch.rand(1, 3, 56, 24)  # tall, and larger
    r = nst.transfer(content, style, model=random_model, progress=False, **{**FAST, "steps": 4})
    assert r.image.shape == content.shape and torch.isfinite(r.image).all()
    assert r.history[-1]["loss"] < r.history[0]["loss"]


def test_a_run_stopped_at_a_coarse_scale_returns_the_full_size(random_model, tiny):
    ramp = torch.linspace(0.2, 0.8, 128)
    content = torch.stack([ramp.expand(96, 128), ramp.flip(0).expand(96, 128),
                           torch.full((96, 128), 0.5)])[None]  # smooth: scales well
    with pytest.warns(UserWarning, match="at evaluation 2; stopped"):
        r = nst.transfer(content, tiny[1], model=random_model, progress=False,
                         **{**FAST, "scales": 2, "steps": 4, "optimizer": "adam", "lr": 1e30,
                            "init": "content"})
    assert r.stop_reason == "diverged" and [h["scale"] for h in r.history] == [0]  # 48x64
    assert r.image.shape == content.shape
    assert (r.image - content).abs().max() < 0.02  # the start image, scaled back up


@pytest.mark.slow
def test_real_transfer_moves_the_image_towards_the_style(caffe_model):
    content = nst.load_image(nst.example("chelsea.png"), 96)
    style = nst.load_image(nst.example("starry_night.jpg"), 96)
    # from the photo itself: the palette start (the default) would recolour it before the
    # optimisation begins, and the content term here measures what the loop keeps
    r = nst.transfer(content, style, model=caffe_model, progress=False, steps=40, size=None,
                     beta=1e2, init="content")
    targets = nst.Targets(caffe_model, nst.Config(), content, style)
    _, c0, s0, _ = targets.losses(caffe_model, content, 1.0, 1.0)
    _, c1, s1, _ = targets.losses(caffe_model, r.image, 1.0, 1.0)
    assert s1 < 0.2 * s0  # much closer to the painting's Gram matrices than the photo was
    other = nst.resize(style, tuple(content.shape[-2:]))  # a picture with other content
    assert c1 < 0.75 * targets.losses(caffe_model, other, 1.0, 1.0)[1]  # 0.62 seen


def test_style_targets_are_eq_4_and_rescaled_to_the_results_size(random_model):
    x, same, larger = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 64, 48)
    config = nst.Config(content_layers=(), style_layers=("conv1_1", "conv3_1"),
                        precision="float32")
    feats = random_model(x, config.style_layers)
    for style in (same, larger):
        targets = nst.Targets(random_model, config, style=style)
        layers = targets.losses(random_model, x, 1.0, 1.0)[3]
        fs = random_model(style, config.style_layers)
        for name in config.style_layers:
            m_x, m_s = feats[name][0, 0].numel(), fs[name][0, 0].numel()
            A = nst.gram_matrix(fs[name]) * m_x / m_s  # = A exactly when the sizes agree
            assert torch.allclose(layers[name], nst.style_layer_loss(feats[name], A), rtol=1e-4)


def test_two_styles_blend_their_gram_matrices(random_model, tiny):
    content, style = tiny
    other = torch.rand(1, 3, 36, 44)
    config = nst.Config(style_blend=(0.25, 0.75))
    both = nst.Targets(random_model, config, content, [style, other])
    with pytest.raises(ValueError, match="one weight per style image"):
        nst.Targets(random_model, nst.Config(style_blend=(1.0,)), content, [style, other])
    one = nst.Targets(random_model, nst.Config(), content, style)
    two = nst.Targets(random_model, nst.Config(), content, other)
    for name in nst.STYLE_LAYERS:
        assert torch.allclose(both.grams[name], 0.25 * one.grams[name] + 0.75 * two.grams[name])
    r = nst.transfer(content, [style, other], model=random_model, progress=False,
                     style_blend=(0.5, 0.5), **FAST)
    assert r.history[-1]["loss"] < r.history[0]["loss"]


def test_tensors_passed_by_mistake_are_converted_or_refused_by_name(random_model, tiny):
    content, style = tiny
    settings = dict(model=random_model, progress=False, **{**FAST, "steps": 2})
    plain = nst.transfer(content, style, **settings)
    with pytest.warns(UserWarning) as caught:
        mistaken = nst.transfer(content * 255, style.permute(0, 2, 3, 1), **settings)
    messages = " ".join(str(w.message) for w in caught)
    assert "content image has values from" in messages and "divided them by 255" in messages
    assert "style image (shape (1, 40, 40, 3), float32) has its channels last" in messages
    assert torch.allclose(mistaken.image, plain.image, atol=1e-5)
    broken = content.clone()
    broken[0, 0, 3, 4] = float("nan")
    with pytest.raises(nst.ImageError, match="^The content image .* holds NaN"):
        nst.transfer(broken, style, **settings)
    with pytest.raises(nst.ImageError, match="^The style image has values from -"):
        nst.transfer(content, torch.randn(1, 3, 40, 40), **settings)
    # a tensor is not a setting: Config fields are plain values (a Config is a cache key)
    with pytest.raises(ValueError, match=r"^init must be one of noise, content, style, palette, got "):
        nst.transfer(content, style, **{**settings, "init": torch.rand(1, 3, 32, 48)})


def test_a_run_computes_its_loss_with_the_functions_it_is_given(random_model, tiny):
    content, style = tiny
    calls = []

    def doubled_content_loss(features, target):  # e.g. a student's own eq. 1
        calls.append(features.shape)
        return 2 * nst.content_loss(features, target)

    functions = nst.LossFunctions(content_loss=doubled_content_loss,
                                  style_layer_loss=nst.style_layer_loss)  # the plain eq. 4
    mine = nst.transfer(content, style, model=random_model, progress=False,
                        functions=functions, **{**FAST, "steps": 1})
    library = nst.transfer(content, style, model=random_model, progress=False,
                           **{**FAST, "steps": 1})
    assert len(calls) == 1 and calls[0][1] == 512  # conv4_2's maps, once per evaluation
    assert mine.history[0]["content"] == pytest.approx(2 * library.history[0]["content"])
    assert mine.history[0]["style"] == pytest.approx(library.history[0]["style"], rel=1e-4)


@pytest.mark.cuda
@cuda
def test_transfer_on_the_gpu_returns_a_cpu_image(tiny):
    content, style = tiny
    result = nst.transfer(content, style, weights="random", device="cuda", size=None, steps=5,
                          scales=1, progress=False)
    model = nst.vgg19("random", device="cuda")
    assert next(model.parameters()).is_cuda  # weights and tensors moved together
    assert result.image.device.type == "cpu" and result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.cuda
@cuda
def test_gpu_and_cpu_agree_on_the_loss(random_model, tiny):
    content, style = tiny
    exact = nst.Config(precision="float32")  # "auto" is half precision on a GPU: see below
    cpu = nst.Targets(random_model, exact, content, style)
    gpu_model = nst.vgg19("random", device="cuda")
    gpu = nst.Targets(gpu_model, exact, content.cuda(), style.cuda())
    a = cpu.losses(random_model, content, 1.0, 1.0)[0]
    b = gpu.losses(gpu_model, content.cuda(), 1.0, 1.0)[0]
    assert torch.allclose(a, b.cpu(), rtol=1e-3)


@pytest.mark.cuda
@cuda
def test_on_a_gpu_auto_precision_is_half_and_the_losses_get_float32(tiny):
    content, style = (t.cuda() for t in tiny)
    model = nst.vgg19("random", device="cuda")
    dtype = nst.vgg.resolve_precision("auto", "cuda")
    assert dtype in (torch.bfloat16, torch.float16)
    half = model(content, ["conv4_2"], dtype=dtype)["conv4_2"]
    full = model(content, ["conv4_2"])["conv4_2"]
    assert half.dtype == torch.float32 and half.is_contiguous(memory_format=torch.channels_last)
    assert (half - full).norm() / full.norm() < 0.05
    auto = nst.Targets(model, nst.Config(), content, style).losses(model, content, 1.0, 1.0)
    exact = nst.Targets(model, nst.Config(precision="float32"), content, style).losses(
        model, content, 1.0, 1.0)
    assert auto.total.dtype == torch.float32
    assert torch.allclose(auto.total, exact.total, rtol=0.05)


def test_the_palette_start_is_the_photo_in_the_paintings_colours(random_model, tiny):
    from nst_lib.image import mean_cov
    from nst_lib.optimize import _initial
    reddish, bluish = torch.tensor([1, .3, .3]).view(1, 3, 1, 1), torch.tensor([.3, .3, 1]).view(1, 3, 1, 1)
    content, style = tiny[0] * reddish, tiny[1] * bluish
    config = nst.Config(**{**FAST, "init": "palette"})
    start = _initial(config, tuple(content.shape[-2:]), content, [style], "cpu")
    # the painting's mean colour (clamping to [0, 1] moves it a little), the photo's layout
    assert torch.allclose(mean_cov(start)[0], mean_cov(style)[0], atol=0.03)
    assert not torch.allclose(mean_cov(start)[0], mean_cov(content)[0], atol=0.03)
    assert torch.corrcoef(torch.stack([start.mean(1).flatten(),
                                       content.mean(1).flatten()]))[0, 1] > 0.5


def test_mean_cov_of_a_blend_is_that_of_the_pixels_pooled():
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8) * 0.5
    from nst_lib.image import mean_cov
    mu, cov = mean_cov([a, b], [0.5, 0.5])
    pooled = torch.cat([a, b], dim=-1)
    mu_p, cov_p = mean_cov(pooled)
    assert torch.allclose(mu, mu_p) and torch.allclose(cov, cov_p)
