"""The one error type of the commands: a user-facing failure, reported as one line."""

from __future__ import annotations


class CommandError(Exception):
  """A user-facing failure: printed as one line, no traceback, exit ``status``."""

  def __init__(self, message: str, status: int = 2):
    super().__init__(" ".join(message.split()))  # one line, whatever it quotes
    self.status = status
