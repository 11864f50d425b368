"""Exit statuses scripts can trust: an internal error is 3 with a log, never 1 ("not certified")."""

import pathlib
import re
from unittest import mock

import jaxattn as ja
from jaxattn_bench.cli import main as bench_main
from jaxattn_plots.__main__ import main as plots_main


def _log_of(err: str) -> pathlib.Path:
  """The log named by the single stderr line of an internal error."""
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in err, err
  return pathlib.Path(re.search(r"traceback in (\S+)\)$", lines[0]).group(1))


def test_a_crash_in_a_command_is_status_3_with_a_log(capsys):
  with mock.patch.object(ja, "min_d", side_effect=RuntimeError("boom")):
    status = bench_main(["min_d", "--length", "8", "--nnz", "1", "--d-max", "4"])
  err = capsys.readouterr().err
  assert status == 3
  assert err.startswith("jaxattn min_d: internal error: RuntimeError: boom")
  log = _log_of(err)
  assert "Traceback" in log.read_text() and "boom" in log.read_text()
  log.unlink()


def test_a_crash_in_plots_is_status_3_with_a_log(tmp_path, capsys):
  with mock.patch("jaxattn_plots.__main__.ResultsStore", side_effect=RuntimeError("bad")):
    status = plots_main(["--results", str(tmp_path / "r.sqlite")])
  err = capsys.readouterr().err
  assert status == 3 and err.startswith("python -m plots: internal error: RuntimeError: bad")
  _log_of(err).unlink()
