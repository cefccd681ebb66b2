"""A new password for `cityline user add` / `user passwd`: asked twice on the terminal, or read
from standard input with --password-stdin. Never taken from the command line, never echoed.

Called outside any event loop, so that a first Ctrl-C interrupts getpass at once.
"""

from __future__ import annotations

import argparse
import sys

from router.cli_admin_session import AdminError


def read_password(args: argparse.Namespace, name: str) -> str:
    """The password for user `name`, checked against the password rules (`BadPassword`)."""
    from router.users import check_password

    password = _password_from_stdin() if args.password_stdin else _password_from_terminal(name)
    check_password(password)  # BadPassword: one line, exit 2, before anything is written
    return password


def _password_from_stdin() -> str:
    from router.auth import MAX_PASSWORD_LENGTH

    text = sys.stdin.read(MAX_PASSWORD_LENGTH + 3)  # enough to tell "too long" with a CRLF
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if not text:
        raise AdminError("no password on standard input", 2)
    if "\n" in text or "\r" in text:
        raise AdminError("standard input must hold the password alone on one line", 2)
    return text


def _password_from_terminal(name: str) -> str:
    import getpass
    import warnings

    try:
        with warnings.catch_warnings():
            # Without a terminal getpass would read standard input with echo on, after a
            # warning: refuse instead, and point to the way meant for that.
            warnings.simplefilter("error", getpass.GetPassWarning)
            first = getpass.getpass(f"New password for {name}: ")
            second = getpass.getpass("Repeat the password: ")
    except getpass.GetPassWarning:
        raise AdminError(
            "no terminal to ask for the password: pipe it in with --password-stdin", 2
        ) from None
    except EOFError:
        raise AdminError("no password given", 2) from None
    if first != second:
        raise AdminError("the two passwords differ; nothing was changed", 2)
    return first
