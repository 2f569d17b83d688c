"""Every reference to the paper names the right text and the right figure.

The project teaches Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional Neural
Networks", CVPR 2016, pp. 2414-2423, which has no arXiv number of its own. Its shorter 2015
preprint, "A Neural Algorithm of Artistic Style" (arXiv:1508.06576), numbers its figures
differently:

    CVPR 2016                                         preprint
    Fig. 1: content from conv1_2 ... conv5_2          Fig. 1: content from conv1_1 ... conv5_1
    Fig. 2: the algorithm, a diagram                  -
    Fig. 3: the Neckarfront in several styles,        Fig. 2
            alpha/beta 5e-4 ... 5e-3
    Fig. 4: alpha/beta 1e-4 ... 1e-1, a 2x2 grid      Fig. 3: rows of style layer sets by
                                                              alpha/beta (1e-5 ... 1e-2)

Each rule in RULES is (what is cited, a context it must not appear in, unless the same window
says it means the preprint), with texts it must flag and texts it must pass. A window is the
sentence around the citation (or its table cell, list item, or comment up to the next line of
code), at most WINDOW characters either side of it, case ignored. The scan covers the two
READMEs, every cell of every notebook and every module of nst_lib.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 150  # characters either side of a citation

PREPRINT = r"preprint|a\s+neural\s+algorithm\s+of\s+artistic\s+style"
ALWAYS = r""  # a context that is always there: the citation itself is the mistake


def fig(n: int) -> str:
    """A citation of figure ``n``: "Fig. n", "Figure n", "Figs. 2 and n", "Fig. 2-4"."""
    others = r"\d\s*(?:,|and|&|or)\s*"
    span = rf"[1-{n}]\s*[-–]\s*[{n}-9]"
    return rf"\bfig(?:ure)?s?\.?\s*(?:{others})*(?:{span}|{n})(?!\d)"


RATIO = (r"α\s*/\s*β|alpha\s*/\s*\\?beta|\bratios?\b"
         r"|\b\d(?:\.\d+)?\s*e\s*-\s*\d|10\s*\^\s*\{?\s*-\s*\d|10⁻")
SEVERAL_STYLES = r"neckarfront|t[üu]bingen|several\s+(?:styles|paintings)"
LAYER_GRID = (r"layer[- ]sets?|sets?\s+of\s+(?:style\s+)?layers"
              r"|\brows?\b[^.;|\n]{0,40}\blayers?\b|\blayers?\b[^.;|\n]{0,40}\brows?\b"
              r"|style\s+layers?\W{1,4}(?:x|×|by|and)?\W{0,4}(?:ratios?|α|alpha)"
              r"|\b1\s*e\s*-\s*0?5\b|10\s*\^\s*\{?\s*-\s*5\b|10⁻⁵")
NOT_STYLE = r"(?:(?!style)[^;|])"  # a character that does not start the word "style"
CONTENT_FROM_X1 = (rf"content{NOT_STYLE}{{0,60}}?\bconv1_1\b{NOT_STYLE}{{0,60}}?\bconv5_1\b"
                   rf"|\bconv1_1\b{NOT_STYLE}{{0,60}}?\bconv5_1\b{NOT_STYLE}{{0,30}}?content")


class Rule(NamedTuple):
    name: str
    cited: str  # what is cited (regex)
    forbidden: str  # a context in the same window that makes the citation wrong (regex)
    unless: str | None  # a context in the same window that makes it right after all (regex)
    message: str
    bad: tuple[str, ...]  # texts the rule must flag
    good: tuple[str, ...]  # texts no rule may flag


RULES = (
    Rule("arxiv-is-the-preprint", r"1508\s*\.\s*06576", ALWAYS, PREPRINT,
         "arXiv:1508.06576 is the preprint, 'A Neural Algorithm of Artistic Style'; the CVPR "
         "paper has no arXiv number: say 'the preprint' or cite CVPR 2016, pp. 2414-2423",
         bad=("*Image Style Transfer Using Convolutional Neural Networks* (CVPR 2016, "
              "[arXiv 1508.06576](https://arxiv.org/abs/1508.06576))",
              "Gatys et al., CVPR 2016, ARXIV:1508.06576."),
         good=("The preprint (arXiv:1508.06576) came first.",
               "*A Neural Algorithm of\nArtistic Style*, arXiv:1508.06576, 2015.")),
    Rule("fig2-is-the-diagram", fig(2), RATIO + "|" + SEVERAL_STYLES, PREPRINT,
         "CVPR Fig. 2 is the diagram of the algorithm: alpha/beta values and the Neckarfront in "
         "several styles are CVPR Fig. 3 (the preprint's Fig. 2)",
         bad=("Only the ratio $\\alpha/\\beta$ matters; the paper's Fig. 2 uses $10^{-3}$.",
              "ratio: float = 1e-3  # alpha/beta per position, paper Fig. 2",
              "FIGURE 2 shows the Neckarfront in several styles.",
              "Fig. 2-3 use 1e-3 and 1e-4."),
         good=("The algorithm is drawn in Fig. 2. The ratio is 1e-3 in Fig. 3.",
               "The preprint's Fig. 2 uses alpha/beta = 1e-3.",
               "CVPR Fig. 3 (the Neckarfront in several styles) uses 8e-4 for The Starry Night.")),
    Rule("fig4-has-no-layer-axis", fig(4), LAYER_GRID, PREPRINT,
         "CVPR Fig. 4 shows four ratios, 1e-4 ... 1e-1, as a 2x2 grid, with no layer axis; the "
         "grid of style layer sets by alpha/beta (1e-5 ... 1e-2) is the preprint's Fig. 3 "
         "(arXiv:1508.06576)",
         bad=("Paper Fig. 4 as one figure: rows = style layers, columns = alpha/beta.",
              "PAPER_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)  # the columns of the paper's Fig. 4",
              "> *Fig. 4: the ratio $\\alpha/\\beta$ is $10^{-5}$, $10^{-4}$ from left to right.",
              "the layer-set x alpha/beta grid (figs. 4 and 6)"),
         good=("CVPR Fig. 4 goes from 1e-4 (texture) to 1e-1 (photo).",
               "Rows of style layer sets by alpha/beta: the preprint's Fig. 3. Fig. 4 has four.",
               "The runs of Fig. 6 start from noise.")),
    Rule("fig3-grid-is-the-preprints", fig(3), LAYER_GRID, PREPRINT,
         "a grid of style layer sets by alpha/beta is the preprint's Fig. 3: say 'the preprint "
         "(arXiv:1508.06576)'; CVPR Fig. 3 is the Neckarfront with five paintings",
         bad=("Fig. 3: rows are the style layer sets, columns the ratio.",
              "the style layers x ratio grid of the paper (Fig. 3)",
              "fig 3 uses 1e-5 ... 1e-2"),
         good=("The preprint's Fig. 3 varies the layer sets and the ratio.",
               "CVPR Fig. 3 uses 1e-3, 8e-4, 5e-3 and 5e-4, one value per painting.",
               "Fig. 3. Rows of layers are elsewhere.")),
    Rule("fig1-content-is-convX_2", fig(1), CONTENT_FROM_X1, PREPRINT,
         "CVPR Fig. 1 reconstructs the content from conv1_2 ... conv5_2; conv1_1 ... conv5_1 "
         "for content is the preprint's Fig. 1",
         bad=("Content reconstructions from conv1_1 ... conv5_1 (paper, Fig. 1).",
              "Fig. 1, bottom row: the content of `conv1_1`, `conv2_1`, `conv3_1`, `conv4_1`, "
              "`conv5_1`."),
         good=("Fig. 1: content from conv1_2 ... conv5_2, style from conv1_1 ... conv5_1.",
               "As in the paper's Fig. 1, the style is matched on conv1_1, then up to conv5_1.",
               "The preprint's Fig. 1 reconstructs the content from conv1_1 ... conv5_1.")),
    Rule("preprint-has-three-figures",
         r"preprint(?:'s)?\W+(?:(?!fig|cvpr)\w+\W+){0,3}?fig(?:ure)?s?\.?\s*[4-9]", ALWAYS, None,
         "the preprint (arXiv:1508.06576) has three figures; Fig. 4 to 7 are the CVPR paper's",
         bad=("the preprint's Fig. 4", "as the preprint shows in Figure 6"),
         good=("the preprint's Fig. 3 and the CVPR paper's Fig. 4",
               "the preprint's Fig. 3, CVPR Fig. 4")),
)

BOUNDARY = re.compile(
    r"(?<![.])[.!?](?![.])(?=\s+[A-Z*_`\"'(\[#>|-])"  # a sentence ends (not "...", "Fig. 2")
    r"|\n[ \t]*\n"  # a blank line
    r"|\n(?=[ \t]*(?:[-*+>]|\d+\.)\s)"  # a list item or a quote starts
    r"|\|"  # a table cell
    r"|\n(?=[ \t]*(?:(?:def|class|return|import|raise|assert|elif|except)\b|@|[)\]}]"
    r"|[A-Za-z_][\w.\[\]'\"]*\s*(?:[-+*/]?=(?!=)|\()|[A-Za-z_]\w*\s*:[^=\n]+=))"  # code
)
ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|cf|vs|al|etc)\.$", re.I)


class Finding(NamedTuple):
    where: str  # a file, or a file and a notebook cell
    line: int  # in the file, or in the cell
    rule: str
    message: str
    text: str  # the window

    def __str__(self) -> str:
        return f"{self.where}, line {self.line}: [{self.rule}] {self.message}\n    {self.text!r}"


def _boundaries(text: str) -> list[int]:
    cuts = [0]
    for m in BOUNDARY.finditer(text):
        if ABBREVIATION.search(text[max(0, m.start() - 5):m.end()]):
            continue  # "e.g. Fig. 4" goes on
        cuts.append(m.end())
    return cuts + [len(text)]


def _window(text: str, cuts: list[int], start: int, end: int) -> str:
    left = max(c for c in cuts if c <= start)
    right = min(c for c in cuts if c >= end)
    return text[max(left, start - WINDOW):min(right, end + WINDOW)]


def check(text: str, where: str = "<text>", first_line: int = 1) -> list[Finding]:
    """The citations in ``text`` that break a rule, with their line numbers."""
    cuts = _boundaries(text)
    found = []
    for rule in RULES:
        for m in re.finditer(rule.cited, text, re.I):
            window = _window(text, cuts, m.start(), m.end())
            if not re.search(rule.forbidden, window, re.I):
                continue
            if rule.unless and re.search(rule.unless, window, re.I):
                continue
            line = first_line + text.count("\n", 0, m.start())
            if not any(f.line == line and f.rule == rule.name for f in found):
                found.append(Finding(where, line, rule.name, rule.message,
                                     " ".join(window.split())))
    return sorted(found, key=lambda f: (f.line, f.rule))


def check_file(path: Path, root: Path = ROOT) -> list[Finding]:
    name = path.relative_to(root).as_posix()
    if path.suffix != ".ipynb":
        return check(path.read_text(encoding="utf-8"), name)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    found = []
    for i, cell in enumerate(cells):
        source = cell["source"]
        found += check("".join(source) if isinstance(source, list) else source,
                       f"{name}, cell {i} ({cell['cell_type']})")
    return found


def scanned_files() -> list[Path]:
    return ([ROOT / "README.md", ROOT / "notebooks" / "README.md"]
            + sorted((ROOT / "notebooks").glob("*.ipynb"))
            + sorted((ROOT / "nst_lib").glob("*.py")))


# ------------------------------------------------------------------------ the rules alone

@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_rule_flags_its_bad_examples(rule):
    for text in rule.bad:
        assert rule.name in {f.rule for f in check(text)}, text


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_rule_passes_its_good_examples(rule):
    for text in rule.good:
        assert check(text) == [], text


def test_figure_citations_and_ranges():
    cites = lambda n, text: re.search(fig(n), text, re.I) is not None  # noqa: E731
    assert cites(2, "Fig. 2") and cites(2, "figure 2") and cites(2, "Figs. 2 and 3")
    assert cites(3, "Fig. 2-4") and cites(3, "Fig. 2–3") and cites(6, "Fig. 4, 6")
    assert not cites(1, "Fig. 12") and not cites(4, "Fig. 2-3") and not cites(2, "fig.subplots(2)")
    assert not cites(2, "config 2") and not cites(4, "eq. 4")


def test_window_is_the_sentence_and_the_line_is_reported():
    # the ratio is in the next sentence: no mistake
    assert check("The diagram is Fig. 2. Only the ratio matters: 1e-3.") == []
    # the ratio is in the same sentence, on the next line: a mistake on line 3
    (finding,) = check("Intro.\n\nThe paper's Fig. 2\nuses alpha/beta = 1e-3.", "f.md")
    assert (finding.where, finding.line, finding.rule) == ("f.md", 3, "fig2-is-the-diagram")
    assert str(finding).startswith("f.md, line 3: [fig2-is-the-diagram]")
    # a line of code ends a comment's window
    assert check("x = 1  # the paper, Fig. 2\nratio = 1e-3") == []
    assert check("# the paper, Fig. 2\n# uses ratio 1e-3")[0].rule == "fig2-is-the-diagram"
    # table cells are windows of their own; "e.g." does not end a sentence
    assert check("| Fig. 2-4; eq. 5, 7 | the ratio alpha/beta |") == []
    assert check("see e.g. Fig. 4 with layer sets")[0].rule == "fig4-has-no-layer-axis"


def test_notebook_cells_are_scanned_with_their_index(tmp_path):
    notebook = {"cells": [
        {"cell_type": "markdown", "source": ["# Title\n"]},
        {"cell_type": "code", "source": ["x = 1\n", "r = 1e-3  # paper, Fig. 2\n"]},
    ]}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    (finding,) = check_file(path, tmp_path)
    assert finding.where == "n.ipynb, cell 1 (code)" and finding.line == 2


# --------------------------------------------------------------------- the repository

def test_the_scan_covers_the_docs_notebooks_and_modules():
    names = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert {"README.md", "notebooks/README.md", "notebooks/04_style_transfer.ipynb",
            "notebooks/05_experiments.ipynb", "nst_lib/config.py",
            "nst_lib/experiments.py"} <= names
    assert all(p.is_file() for p in scanned_files())


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_references_to_the_paper_are_right(path):
    found = check_file(path)
    assert not found, "\n".join(map(str, found))
