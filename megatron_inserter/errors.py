"""The one base class of the project's user-facing errors.

An ``InserterError`` message is one line that names the file, record or flag at fault and says how to fix
it; the CLI (``megatron_inserter.flags.run_command``) prints it as ``inserter <cmd>: error: <message>``
and shows a traceback only with ``--debug``. Every package's error class derives from it.
"""

from __future__ import annotations


class InserterError(Exception):
    """A bad input, flag or state the user can fix; the message says what and how."""

    exit_code: int = 1


class UsageError(InserterError, ValueError):
    """A bad flag or flag combination (exit status 2, as argparse)."""

    exit_code = 2


class DataError(InserterError, ValueError):
    """Input data that is corrupt, truncated, inconsistent or of the wrong kind."""
