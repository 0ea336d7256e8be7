"""A griffe extension for the API pages: it makes liteunet's docstrings, written for both
``help()`` and the site, read as Markdown before mkdocstrings parses them.

- ``Example:`` becomes ``Examples:``: the docstrings title their examples as kornia's do;
  griffe's Google-style parser knows the section as ``Examples:`` and would render the doctest
  as prose.
- Sphinx roles, which Markdown leaves as literal text: ``:class:`X```, ``:func:`X```,
  ``:mod:`X``` and the like become code spans (``~a.b.C`` shows ``C``, as Sphinx shows it), and
  ``:math:`...``` becomes inline MathML (latex2mathml, as the ``$$`` equations of the pages: the
  browser renders it, no script, works offline).
"""

from __future__ import annotations

import re

from griffe import Extension

_TITLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|data|attr|exc|obj|const|ref):`([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def _code(match: re.Match) -> str:
    target = " ".join(match.group(2).split())
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    target = target.lstrip("!")
    return f"`{target}`"


def _math(match: re.Match) -> str:
    from latex2mathml.converter import convert

    # No xmlns (HTML needs none): its "http:" would read as a "type: description" colon to
    # griffe's parser in a Returns entry.
    return convert(" ".join(match.group(1).split())).replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")


def markdown_docstring(text: str) -> str:
    """The docstring ``text`` with its example titles and Sphinx roles made Markdown."""
    text = _TITLE.sub(r"\1Examples:", text)
    text = _ROLE.sub(_code, text)
    return _MATH.sub(_math, text)


class ExampleSections(Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
