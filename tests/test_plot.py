"""nst_lib.plot: each function returns a Figure with the axes and artists it promises."""

import io

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import nst_lib as nst  # noqa: E402
from nst_lib import plot  # noqa: E402


def _history(steps=6, scales=1):
    """A loss history like nst.transfer's: content, style and three layers."""
    return [{"step": k + 1, "loss": 10.0 / (k + 1), "content": 2.0 / (k + 1),
             "style": 0.008 / (k + 1), "scale": k * scales // steps, "seconds": 0.1 * k,
             "layers": {"conv4_2": 2.0 / (k + 1), "conv1_1": 0.01, "conv2_1": 0.006}}
            for k in range(steps)]


def test_images_one_axis_per_picture_with_titles():
    pictures = {"tensor": torch.rand(1, 3, 20, 30), "pil": Image.new("RGB", (30, 20)),
                "path": nst.example("chelsea.png")}
    fig = plot.images(pictures)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["tensor", "pil", "path"]
    assert all(len(ax.images) == 1 for ax in fig.axes)


def test_images_grid_hides_unused_axes():
    fig = plot.images([torch.rand(1, 3, 16, 16)] * 5, ncols=3)
    assert len(fig.axes) == 6  # 2 rows of 3
    assert sum(len(ax.images) for ax in fig.axes) == 5
    assert not any(ax.axison for ax in fig.axes)


def test_images_needs_a_picture():
    with pytest.raises(ValueError, match=r"^images\(\) needs at least one picture"):
        plot.images([])


def test_loss_curves_one_line_per_term_and_per_layer():
    fig = plot.loss_curves(_history(), alpha=1.0, beta=1e3)
    terms, layers = fig.axes
    assert [line.get_label() for line in terms.lines] == ["total (eq. 7)", "α · L_content",
                                                          "β · L_style"]
    assert [line.get_label() for line in layers.lines] == ["conv4_2", "conv1_1", "conv2_1"]
    assert terms.get_yscale() == "log"
    # beta multiplies the style curve
    assert terms.lines[2].get_ydata()[0] == pytest.approx(1e3 * 0.008)


def test_loss_curves_from_a_result_skips_an_absent_term():
    history = [dict(h, style=0.0, layers={"conv4_2": h["content"]}) for h in _history()]
    result = nst.Result(image=torch.zeros(1, 3, 8, 8), history=history, config=nst.Config())
    terms, layers = plot.loss_curves(result).axes
    assert len(terms.lines) == 2  # total and content; no style term in a reconstruction
    assert len(layers.lines) == 1


def test_loss_curves_mark_scale_changes():
    history = _history(steps=6, scales=2)  # evaluations 1-3 at scale 0, 4-6 at scale 1
    for ax in plot.loss_curves(history).axes:
        marks = [line for line in ax.lines if line.get_label().startswith("_")]
        assert [list(line.get_xdata()) for line in marks] == [[4, 4]]  # where scale 1 starts
    _, layers = plot.loss_curves(_history(steps=6, scales=1)).axes
    assert len(layers.lines) == 3  # one scale: the three layers only


def test_gram_heatmap_panels_and_channel_limit():
    f = torch.rand(1, 80, 5, 5)
    gram = nst.gram_matrix(f)
    fig = plot.gram_heatmap({"a": gram, "b": gram}, channels=16)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2  # the other axes are colour bars
    assert panels[0].images[0].get_array().shape == (16, 16)
    assert [ax.get_title() for ax in panels] == ["a", "b"]


def test_gram_heatmap_refuses_a_non_square_matrix():
    with pytest.raises(ValueError, match="square"):
        plot.gram_heatmap(torch.rand(3, 4))


def test_feature_maps_picks_the_most_active():
    f = torch.zeros(1, 10, 4, 6)
    f[0, 7] = 5.0
    f[0, 2] = 1.0
    fig = plot.feature_maps(f, channels=2, ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["#7", "#2"]
    assert fig.axes[0].images[0].get_array().shape == (4, 6)


def test_feature_maps_by_index_and_explicit_channels():
    f = torch.rand(12, 4, 4)
    assert len(plot.feature_maps(f, channels=12, ncols=5).axes) == 15  # 3 rows of 5
    fig = plot.feature_maps(f, channels=[3, 1], order="index")
    assert [ax.get_title() for ax in fig.axes] == ["#3", "#1"]
    with pytest.raises(ValueError, match="order must be 'activity' or 'index', got 'random'"):
        plot.feature_maps(f, order="random")


def test_receptive_fields_one_square_per_layer():
    fig = plot.receptive_fields(torch.rand(1, 3, 40, 60), {"conv1_1": 3, "conv5_1": 196})
    (ax,) = fig.axes
    assert [p.get_width() for p in ax.patches] == [3, 196]
    assert ax.get_xlim()[0] < 0  # the large square is not cut off


def test_to_png_gives_png_bytes():
    data = plot.to_png(plot.images([torch.rand(1, 3, 16, 16)]))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def _gif(data: bytes):
    image = Image.open(io.BytesIO(data))
    durations = []
    for k in range(image.n_frames):
        image.seek(k)
        durations.append(image.info["duration"])
    image.seek(0)
    return image, durations


def test_animation_one_frame_per_picture_all_at_the_final_size(tmp_path):
    colours = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    sizes = [(8, 12), (16, 24), (16, 24)]  # a coarse scale's picture first
    frames = [torch.tensor(c).view(1, 3, 1, 1).expand(1, 3, *hw).clone()
              for c, hw in zip(colours, sizes)]
    data = plot.animation(frames, tmp_path / "run.gif", fps=5, hold=2.0)
    assert (tmp_path / "run.gif").read_bytes() == data
    gif, durations = _gif(data)
    assert gif.format == "GIF" and gif.n_frames == 3 and gif.size == (24, 16)
    assert gif.info["loop"] == 0 and durations == [200, 200, 2000]
    gif.seek(0)
    assert gif.convert("RGB").getpixel((20, 12)) == (255, 0, 0)  # the scaled-up first frame


def test_animation_merges_a_picture_equal_to_the_one_before():
    a, b = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    gif, durations = _gif(plot.animation([a, b, b.clone()], fps=10, hold=1.0))
    assert gif.n_frames == 2 and durations == [100, 1100]
    with pytest.raises(ValueError, match="at least one frame"):
        plot.animation([])


def test_contact_sheet_a_caption_below_each_picture():
    fig = plot.contact_sheet([torch.rand(1, 3, 16, 24)] * 3, ["#1\nseed: 0", "#2", "#3"],
                             ncols=2)
    pictures = [ax for ax in fig.axes if ax.images]
    assert len(pictures) == 3
    assert [[t.get_text() for t in ax.texts] for ax in pictures] == [["#1\nseed: 0"], ["#2"],
                                                                     ["#3"]]
    assert all(ax.texts[0].get_position()[1] < 0 for ax in pictures)  # below the picture
    assert plot.to_png(fig, tight=True)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one caption per picture"):
        plot.contact_sheet([torch.rand(1, 3, 16, 16)], [])


def test_grid_labels_rows_and_columns():
    rows = [[torch.rand(1, 3, 16, 16)] * 3, [torch.rand(1, 3, 16, 16)] * 2]
    fig = nst.plot.grid(rows, row_labels=["a", "b"], col_labels=["x", "y", "z"])
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes] == ["x\na", "y", "z", "b", "", ""]


def test_algorithm_draws_fig2s_three_columns_and_equations():
    fig = plot.algorithm()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for what in ("conv1_1", "conv5_1", "conv4_2", "eq. 1", "eq. 5", "eq. 7", "white noise",
                 "style image", "content image", "Fig. 2"):
        assert what in texts + fig.get_suptitle(), what
    assert texts.count("conv4_2") == 2  # the content layer, in the middle and on the right


def test_algorithm_draws_the_pictures_given():
    fig = plot.algorithm(style=torch.rand(1, 3, 8, 12), start=torch.rand(1, 3, 8, 8),
                         content=torch.rand(1, 3, 12, 8))
    assert len(fig.axes[0].images) == 3
    plot.to_png(fig)  # draws
