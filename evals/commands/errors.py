"""Every failure of a `personasim` command is one line on stderr, `error: ...`, and exit code 2.

One place for all commands: `GuardedGroup` (the root group's class) turns any exception a command
raises into that line, and `run` (what `personasim` and `python -m evals.cli` call) does the same for
usage errors and anything raised outside a command. Commands only raise, or call `fail` with a
message that names the file, record or field.

- Expected errors (bad input): ValueError and its family (pydantic, JSON, our *Error classes that
  derive from it), OSError (with the file it names), and every exception class of personasim's own
  packages: their message is the line.
- Anything else is a bug: the line gives its type and message and how to see the traceback
  (``PERSONASIM_TRACEBACK=1``, which prints it above the line for any error).
- Secrets never reach the line: values of *KEY / *TOKEN / *SECRET / *PASSWORD environment variables are
  masked (`simulator.llm.redact`).
- Log warnings during a command (e.g. "skipped 3 binary files") are printed after it succeeds, one
  `warning: ...` line each; when it fails, its error line says what matters and they are dropped.

A leaf module: it imports nothing of personasim at load time.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import typer
from typer.core import TyperGroup

TRACEBACK_ENV = "PERSONASIM_TRACEBACK"
EXIT_CODE = 2
OUR_PACKAGES = ("evals", "personas", "simulator", "recsys")
MAX_CHARS = 1000  # a message that quotes a whole input stays readable


def _redact(text: str) -> str:
    try:
        from simulator.llm.errors import redact
    except Exception:  # noqa: BLE001 - a broken install must still print its error line
        return text
    return redact(text)


def one_line(message: str) -> str:
    """``message`` on one line (white space collapsed, at most MAX_CHARS), secrets masked."""
    text = " ".join(_redact(str(message)).split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."


def emit(message: str) -> None:
    typer.echo(f"error: {one_line(message)}", err=True)


def fail(message: str) -> NoReturn:
    """Print ``error: MESSAGE`` (one line) to stderr and end the command with exit code 2."""
    emit(message)
    raise typer.Exit(EXIT_CODE)


def option_error(exc) -> str:
    """A pydantic ValidationError of settings built from command-line options, as the option it names:
    ``--max-tokens: Input should be greater than 0``."""
    err = exc.errors()[0]
    return f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}"


def check_backend(settings, option: str = "--backend") -> None:
    """`LLMSettings.check`, its error naming the option: ``--backend nope: unknown LLM backend 'nope'; ...``."""
    from simulator.llm import LLMConfigError

    try:
        settings.check()
    except LLMConfigError as exc:
        fail(f"{option} {settings.backend}: {exc}")


def is_expected(exc: BaseException) -> bool:
    """Bad input rather than a bug: a ValueError, an OSError, or any error class of our own packages."""
    return isinstance(exc, (ValueError, OSError)) or type(exc).__module__.split(".")[0] in OUR_PACKAGES


def describe(exc: BaseException) -> str:
    """The one line for ``exc`` (without the ``error:`` prefix)."""
    cause = getattr(exc, "cause", None)  # Ray wraps a task's exception; the line is the task's
    if isinstance(cause, BaseException) and cause is not exc:
        return describe(cause)
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc) or type(exc).__name__
        if exc.filename is None:
            return what
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else f"{exc.filename}"
        return f"{where}: {what}"
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        from evals.campaign.inputs import first_error

        return f"{exc.title}: {first_error(exc)}"
    text = str(exc).strip() or type(exc).__name__
    if is_expected(exc):
        return text
    return f"unexpected {type(exc).__name__}: {text} (a bug; rerun with {TRACEBACK_ENV}=1 to see the traceback)"


def report(exc: BaseException) -> int:
    """Print the line for ``exc`` (and, with PERSONASIM_TRACEBACK=1, its traceback first); the exit code."""
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    emit(describe(exc))
    return EXIT_CODE


def _is_cli_exception(exc: BaseException) -> bool:
    """typer's / click's own exceptions (usage errors, exits): recent typer vendors click, so they are
    recognised by what they carry rather than by one library's classes."""
    return isinstance(exc, (typer.Exit, typer.Abort)) or (hasattr(exc, "format_message") and hasattr(exc, "exit_code"))


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on the write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file behind stdout (a test's capture)
        return False


@contextmanager
def guarded() -> Iterator[None]:
    """Turn any exception of the block into the one line and exit code 2 (typer's own exits pass).

    A closed stdout (`personasim ... | head`) passes too: click ends such a command quietly with
    exit code 1, as it does for its own help; an `error: Broken pipe` line would be noise. Any
    other broken pipe (a server's socket, a worker's pipe) is a failure like the rest.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the point: nothing reaches the user as a traceback
        if _is_cli_exception(exc) or (isinstance(exc, BrokenPipeError) and _stdout_gone()):
            raise
        raise typer.Exit(report(exc)) from None


class _Deferred(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def deferred_warnings() -> Iterator[None]:
    """Hold the block's log warnings; print them (`warning: ...`) only if it ends without an exception."""
    handler, root = _Deferred(), logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
    for record in handler.records:
        typer.echo(f"warning: {one_line(record.getMessage())}", err=True)


class GuardedGroup(TyperGroup):
    """The root command group: every subcommand runs inside `guarded`, whether it is called from the
    shell (`run`) or from a test's CliRunner."""

    def invoke(self, ctx: typer.Context):
        with guarded(), deferred_warnings():
            return super().invoke(ctx)


def run(app: typer.Typer, argv: Sequence[str] | None = None, prog_name: str = "personasim") -> int:
    """Run the CLI; usage errors are one line too. Returns the exit code."""
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=list(argv) if argv is not None else None, prog_name=prog_name,
                          standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        emit("aborted")
        return 1
    except Exception as exc:  # noqa: BLE001 - usage errors, and anything raised outside a command
        if not _is_cli_exception(exc):
            return report(exc)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `personasim GROUP`: its help, as typer prints it
            exc.show()
            return exc.exit_code
        ctx = getattr(exc, "ctx", None)
        path = ctx.command_path if ctx is not None else prog_name
        emit(f"{path}: {exc.format_message().rstrip('.')} (see {path} --help)")
        return EXIT_CODE
    return rv if isinstance(rv, int) else 0
