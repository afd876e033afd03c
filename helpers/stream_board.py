"""Watch many streams at once in a notebook: one line per input, updated in place.

A tool a learner calls (lesson 02); reading it is optional.

Printing the tokens of `stream_merged` as they arrive mixes every answer into one unreadable
line. `StreamBoard` gives each input its own line instead:

    with StreamBoard(labels) as board:
        async for event in stream_merged(chain, inputs, max_concurrency=4):
            board.update(event)

    #0 rivers    ✓  63 tokens  It helps to start small and measure before changing anything...
    #1 tea       …  17 tokens  ...the same approach works for larger
    #2 the moon  ·  waiting

`·` waiting, `…` streaming (the line shows the newest text), `✓` done, `✗` failed (the line shows
the error). While the stream runs, the board is one display area redrawn at most every
`refresh` seconds through an IPython display handle. On exit the live area is emptied and the
final board is printed once, so a saved notebook keeps only the final state, which depends on the
answers alone and is the same on every run. Outside Jupyter only the final board is printed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["StreamBoard"]

_MARKS = {"waiting": "·", "streaming": "…", "done": "✓", "error": "✗"}


class StreamBoard:
    """One line per input, fed with `StreamEvent`s; see the module docstring."""

    def __init__(self, labels: Sequence[str], *, width: int = 100, refresh: float = 0.1) -> None:
        if not labels:
            raise ValueError("labels must name at least one input")
        self.labels = [str(label) for label in labels]
        self.width = width
        self.refresh = refresh
        self.texts = [""] * len(labels)  # what has arrived so far, per input
        self.tokens = [0] * len(labels)
        self.states = ["waiting"] * len(labels)
        self.errors: list[str | None] = [None] * len(labels)
        self._handle: Any = None
        self._last_draw = 0.0

    def update(self, event: Any) -> None:
        """Record one StreamEvent and redraw if `refresh` seconds have passed."""
        i = event.index
        if event.kind == "token":
            self.texts[i] += event.text
            self.tokens[i] += 1
            self.states[i] = "streaming"
        else:
            self.texts[i] = event.text
            self.states[i] = event.kind  # "done" or "error"
            self.errors[i] = event.error
        if self._handle is not None and time.perf_counter() - self._last_draw >= self.refresh:
            self._draw()

    def render(self) -> str:
        """The board as text: one line per input."""
        label_width = max(len(label) for label in self.labels)
        number_width = len(str(len(self.labels) - 1))
        lines = []
        for i, label in enumerate(self.labels):
            state = self.states[i]
            head = f"#{i:<{number_width}} {label:<{label_width}}  {_MARKS[state]}"
            if state == "waiting":
                lines.append(f"{head}  waiting")
                continue
            head += f" {self.tokens[i]:>3} tokens  "
            room = max(10, self.width - len(head))
            if state == "streaming":  # the newest text, so the line visibly moves
                text = " ".join(self.texts[i].split())
                body = text if len(text) <= room else "..." + text[-(room - 3):]
            else:
                text = " ".join((self.errors[i] if state == "error" else self.texts[i]).split())
                body = text if len(text) <= room else text[: room - 3] + "..."
            lines.append(head + body)
        return "\n".join(lines)

    def _draw(self) -> None:
        from IPython.display import Pretty

        self._handle.update(Pretty(self.render()))
        self._last_draw = time.perf_counter()

    def __enter__(self) -> StreamBoard:
        try:
            from IPython import get_ipython
            from IPython.display import Pretty, display
        except ImportError:
            return self
        if get_ipython() is not None:
            # Starts empty and ends empty: only the final print below stays in a saved notebook.
            self._handle = display(Pretty(""), display_id=True)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._handle is not None:
            from IPython.display import Pretty

            self._handle.update(Pretty(""))
            self._handle = None
        print(self.render())
