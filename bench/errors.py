"""Errors of the commands: a user's failure as one line, an internal error as one line and a log.

Exit statuses: 0 success (certified), 1 not certified, 2 bad input or a job
that cannot fit, 3 an internal error (a bug: the traceback goes to a log file).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback

INTERNAL_ERROR = 3


class CommandError(Exception):
  """A user-facing failure: printed as one line, no traceback, exit ``status``."""

  def __init__(self, message: str, status: int = 2):
    super().__init__(" ".join(message.split()))  # one line, whatever it quotes
    self.status = status


def report_internal_error(prog: str) -> int:
  """For the exception being handled: its traceback to a new log file, one line on stderr; 3.

  The line names the exception and the log's path, so a script sees exit
  status 3 (never 1, which means "not certified") and a person the traceback.
  """
  error = sys.exc_info()[1]
  handle, path = tempfile.mkstemp(prefix="jaxattn-error-", suffix=".log")
  with os.fdopen(handle, "w", encoding="utf-8") as log:
    traceback.print_exc(file=log)
  summary = " ".join(f"{type(error).__name__}: {error}".split())[:300]
  print(f"{prog}: internal error: {summary} (traceback in {path})", file=sys.stderr)
  return INTERNAL_ERROR
