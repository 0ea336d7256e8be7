"""A griffe extension for the API pages: liteunet's docstrings title their examples ``Example:``
(as kornia's do); griffe's Google-style parser knows the section as ``Examples:`` and would
render the doctest as prose. Renaming the title before parsing makes it a code example."""

from __future__ import annotations

import re

from griffe import Extension

_TITLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _TITLE.sub(r"\1Examples:", obj.docstring.value)
