"""`make demo` end to end over a few simulated days: it prints the fleet and writes the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.demo import main


def test_the_demo_prints_the_fleet_status_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    assert main(["--days", "3", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "Fleet status at 2026-11-04 00:00 UTC" in out
    assert "misconfigured app-eastus-01" in out
    assert f"Report: {report.resolve()}" in out
    assert out.rstrip().endswith("Stopped Azurite and the ARM simulator.")
    page = report.read_text()
    assert page.startswith("<!doctype html>")
    assert page.count('<section class="card"') == 9, "one card per protected demo VM"
    assert '<p id="span">Data from <time id="first">2026-11-01 ' in page
    operator = page[page.index('<table id="operator">') : page.index("<h2>Fleet</h2>")]
    assert "<td>app-eastus-01</td>" in operator
    assert "backup-policy tag invalid: " in operator, "the misconfigured VM, with the reason"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "0"], "--days 0: give 2 to 400 simulated days"),
        (["--fleet", "no-such.json"], "--fleet no-such.json: no such file"),
    ],
    ids=["no-days", "missing-fleet"],
)
def test_bad_arguments_get_a_one_line_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
