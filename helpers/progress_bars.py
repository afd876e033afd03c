"""tqdm.auto's progress bar, whose saved text is the bar as it ended (not as it began).

Backstage: a learner need not read this; `from helpers.progress_bars import tqdm` is a drop-in
for `from tqdm.auto import tqdm`.

Why: JupyterLab draws widgets only in a trusted notebook, and a notebook it did not run itself
(opened before it is run, a learner's copy, one executed by nbconvert) is untrusted. For tqdm's
widget bar it then shows the output's `text/plain`, which tqdm freezes when the bar is first
displayed: "0%| 0/200", above the results. This bar fixes that text:

- when the bar closes, its display is updated (`update_display`) with the bar's final text,
  so a saved notebook shows e.g. "100%|██████████| 200/200 [00:01<00:00, 168.88req/s]";
- until then its text is the bar as it will read when complete, elapsed 0. nbval compares the
  text of each output as first displayed (it ignores display updates) with the saved one, so
  the two agree once tests/sanitize.cfg masks times and rates; a run that stops short (an
  error, an interrupt) saves its real count, e.g. "37/200".

The live widget is tqdm's own, unchanged. Outside Jupyter this is tqdm.auto's bar, untouched; so
is a bar without a known total, with `leave=False` or with `delay`, whose final text cannot be
told in advance (its saved text stays tqdm's first one).
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.notebook import tqdm_notebook

__all__ = ["tqdm"]

_IN_JUPYTER = issubclass(_auto_tqdm, tqdm_notebook)  # tqdm.auto chose the widget bar (a Jupyter kernel)


class tqdm(_auto_tqdm):  # noqa: N801  (named as the tqdm it replaces)
    """tqdm.auto's bar; in Jupyter, its saved text/plain is its final line (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._display_handle = None
        if not _IN_JUPYTER or kwargs.get("delay") or not kwargs.get("leave", True) or not kwargs.get("display", True):
            super().__init__(*args, **kwargs)
            return
        super().__init__(*args, **{**kwargs, "display": False})  # shown below, under a display id
        if self.disable or self.total is None:
            if not self.disable:
                _display(self.container, raw=False)  # tqdm's own text: its final one is not known yet
            return
        self._display_handle = _display(self._bundle(self._text(complete=True)), raw=True)

    def close(self) -> None:
        """Close the bar (tqdm's), then save its final line as the display's text."""
        was_open = not self.disable
        super().close()
        if was_open and self._display_handle is not None and self.total is not None:
            self._display_handle.update(self._bundle(self._text(complete=False)), raw=True)

    def _text(self, complete: bool) -> str:
        """The bar as text: as it is now, or as it will read when complete (n = total, no time yet)."""
        line = {**self.format_dict, "ascii": False}
        if complete:
            line.update(n=self.total, elapsed=0, rate=None)
        return self.format_meter(**line)

    def _bundle(self, text: str) -> dict[str, Any]:
        """The widget's display data, with `text` as its text/plain."""
        return {**self.container._repr_mimebundle_(), "text/plain": text}


def _display(obj: Any, raw: bool) -> Any:
    """IPython's display with a display id; returns the handle that updates it."""
    from IPython.display import display

    return display(obj, raw=raw, display_id=True)
