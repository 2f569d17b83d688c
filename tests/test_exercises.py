"""nst_lib.exercises: solutions pass, stubs and the usual mistakes get a verdict, never an error."""

import pytest
import torch

import nst_lib as nst
from nst_lib import exercises

LIBRARY = {  # the library functions each check compares with
    "content_loss": nst.content_loss,
    "gram_matrix": nst.gram_matrix,
    "style_layer_loss": nst.style_layer_loss,
    "style_loss": nst.style_loss,
}


def _solution(name):
    namespace = {"nst": nst, "torch": torch}
    exec(exercises.EXERCISES[name].solution, namespace)
    return namespace[name]


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_the_printed_solution_passes(name, capsys):
    verdict = exercises.check(name, _solution(name))
    assert verdict and repr(verdict).startswith("Correct")
    exercises.solution(name)
    assert f"def {name}(" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(LIBRARY))
def test_the_library_passes(name):
    assert exercises.check(name, LIBRARY[name])


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
@pytest.mark.parametrize("stub", [lambda *a, **k: None, lambda *a, **k: NotImplemented])
def test_a_placeholder_is_not_yet_with_a_hint(name, stub):
    verdict = exercises.check(name, stub)
    assert not verdict
    assert verdict.message.startswith("Not yet") and "placeholder" in verdict.message
    assert "Hint:" in verdict.message


def _raises(*args, **kwargs):
    raise NotImplementedError


def test_not_implemented_error_is_a_placeholder_too():
    verdict = exercises.check("gram_matrix", _raises)
    assert not verdict and "placeholder" in str(verdict)


def test_an_error_in_the_students_code_is_reported_not_raised():
    verdict = exercises.check("gram_matrix", lambda f: f.no_such_method())
    assert not verdict and "AttributeError" in str(verdict)


@pytest.mark.filterwarnings("ignore:weights='random'")
def test_the_layer_shape_is_measured_on_the_network():
    measured = lambda name, h, w: tuple(  # noqa: E731
        nst.vgg19("random", device="cpu")(torch.zeros(1, 3, h, w), [name])[name].shape[1:])
    assert exercises.check("layer_shape", measured)
    half_up = lambda name, h, w: (64 * 2 ** (int(name[4]) - 1) if int(name[4]) < 5 else 512,  # noqa: E731
                                  -(-h // 2 ** (int(name[4]) - (name[0] == "c"))),
                                  -(-w // 2 ** (int(name[4]) - (name[0] == "c"))))
    verdict = exercises.check("layer_shape", half_up)
    assert not verdict and "rounds down" in str(verdict)


MISTAKES = [
    ("content_loss", lambda f, p: ((f - p) ** 2).sum(), "factor 2"),
    ("content_loss", lambda f, p: 0.5 * ((f - p) ** 2).mean(), "mean"),
    ("content_loss", lambda f, p: (f - p).norm(), "square root"),
    ("gram_matrix", lambda f: f.reshape(f.shape[1], -1).T @ f.reshape(f.shape[1], -1),
     "positions x positions"),
    ("gram_matrix", lambda f: f.flatten(2) @ f.flatten(2).transpose(1, 2), "batch dimension"),
    ("gram_matrix", lambda f: nst.gram_matrix(f) / (f.shape[2] * f.shape[3]), "divide by M"),
    ("gram_matrix", lambda f: nst.gram_matrix(f.permute(0, 2, 3, 1).reshape(f.shape)),
     "mixes filters with positions"),
    ("style_layer_loss",
     lambda f, a: 4 * nst.style_layer_loss(f, a), "the 4 is missing"),
    ("style_loss", lambda f, g, w: sum(nst.style_layer_loss(f[n], g[n]) for n in w),
     "Multiply each E_l"),
    ("style_loss", lambda f, g, w: sum(nst.style_layer_loss(f[n], g[n]) for n in f),
     "KeyError"),
]


@pytest.mark.parametrize("name, wrong, message", MISTAKES)
def test_the_usual_mistakes_get_their_hint(name, wrong, message):
    verdict = exercises.check(name, wrong)
    assert not verdict and message in str(verdict)


def test_a_check_does_not_let_the_student_change_the_reference_inputs():
    def in_place(f, p):
        f.zero_()
        return nst.content_loss(f, p)

    assert not exercises.check("content_loss", in_place)
    assert exercises.check("content_loss", nst.content_loss)


def test_an_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="gram_matrix"):
        exercises.check("gram", nst.gram_matrix)


@pytest.mark.parametrize("odd", [lambda *a: "text", lambda *a: [1, 2], lambda *a: float("nan"),
                                 lambda *a: {"a": 1}, lambda *a: (1,)])
def test_odd_answers_get_a_verdict(odd):
    for name in exercises.EXERCISES:
        verdict = exercises.check(name, odd)
        assert not verdict and verdict.message.startswith("Not yet")
