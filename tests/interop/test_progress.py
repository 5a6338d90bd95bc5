"""The shared progress bar (cli/output.py Ui.progress): silent off a TTY and under --quiet /
--json, counting either way; drawn with bytes, rate and ETA on a terminal."""

from __future__ import annotations

import io

from imagebuilder.cli.output import Progress, Ui


def test_silent_when_not_a_tty_or_quiet_or_json(capsys):
    for ui in (Ui(), Ui(quiet=True), Ui(json=True)):
        with ui.progress(1000, "fetch") as bar:
            bar.advance(400)
            bar.update(total=2000, label="fetch 2")
            bar.advance(600)
        assert bar.done == 1000 and not bar.enabled
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_draws_bytes_rate_and_eta_on_a_terminal(monkeypatch):
    import rich.console

    buf = io.StringIO()
    real = rich.console.Console

    def console(*a, **kw):
        kw.pop("stderr", None)
        return real(file=buf, force_terminal=True, width=100, **kw)

    monkeypatch.setattr(rich.console, "Console", console)
    with Progress(2_000_000, "downloading", enabled=True) as bar:
        bar.advance(1_000_000)
        bar._bar.refresh()
        text = buf.getvalue()
    assert "downloading" in text and "1.0/2.0 MB" in text
    with Progress(3, "building", unit="items", enabled=True) as bar:
        bar.advance(2)
        bar._bar.refresh()
    assert "2/3" in buf.getvalue()
