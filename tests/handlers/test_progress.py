"""The progress bar draws in a terminal and stays out of log files."""
import io

import torch
from ignite.engine import Engine

from pipeline.handlers import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream: io.StringIO, **kwargs) -> str:
    engine = Engine(lambda e, batch: {"loss": torch.tensor(0.5)})
    ProgressBar(desc="train", file=stream, **kwargs).attach(engine)
    engine.run(range(4), max_epochs=2)
    return stream.getvalue()


def test_the_bar_is_drawn_in_a_terminal_with_the_loss():
    out = _run(_Terminal())
    assert "train" in out and "loss=0.5" in out


def test_a_log_file_gets_no_redraws_unless_asked():
    assert _run(io.StringIO()) == ""
    assert "loss=0.5" in _run(io.StringIO(), disable=False)
