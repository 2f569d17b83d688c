"""JavaScript helpers over the explorer's DOM (ipywidgets 8), for the browser tests.

The explorer is the widget that has an "α/β" slider; its parts are found by their labels.
"""

from __future__ import annotations

from typing import Callable

JS_FIND = r"""
const explorer = () => {
  const label = [...document.querySelectorAll('SCOPE.widget-label')]
    .find(e => e.textContent.trim() === 'α/β');
  let node = label;
  while (node && !(node.classList.contains('widget-vbox') &&
                   node.parentElement.closest('.widget-vbox') === null)) {
    node = node.parentElement;
  }
  return node;
};
const resultImage = () => [...explorer().querySelectorAll('.widget-html')]
  .find(e => e.textContent.trim() === 'result').parentElement.querySelector('img');
const progressBar = () => explorer().querySelector('.widget-hprogress .progress-bar');
const statusLine = () => [...explorer().querySelectorAll('.widget-html')]
  .map(e => e.textContent.trim())
  .find(t => /^(Press Run|Running|step |steps|stopped|converged|time|diverged|Error|Loaded|Saved|Not saved|Nothing)/.test(t));
const costLine = () => [...explorer().querySelectorAll('.widget-html')]
  .map(e => e.textContent.trim()).find(t => /^(This run will need|Cannot run)/.test(t));
const compared = side => {  // the picture and the settings shown under menu A or B
  const label = [...explorer().querySelectorAll('.widget-dropdown .widget-label')]
    .find(e => e.textContent.trim() === side);
  const box = label.closest('.widget-dropdown').parentElement;
  const img = box.querySelector('img');
  return {src: img.src, shown: img.getBoundingClientRect().width > 0,
          settings: box.querySelector('.widget-html').innerText};
};
const galleryRuns = () => explorer().querySelectorAll(".widget-html img[src^='data:image/png']")
  .length;
const runButton = () => [...explorer().querySelectorAll('button')]
  .find(b => b.textContent.trim() === 'Run');
"""


def explorer_js(scope: str = "") -> Callable[[str], str]:
    """A function that wraps a JavaScript ``body`` (which may use ``arg`` and the helpers
    above) into a function for Playwright's ``evaluate``; ``scope`` is a CSS selector, with
    a trailing space, of where to look for the explorer (e.g. inside notebook outputs)."""
    helpers = JS_FIND.replace("SCOPE", scope)
    return lambda body: f"(arg) => {{ {helpers} {body} }}"
