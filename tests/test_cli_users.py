"""`cityline user ...` and `cityline token ...`, run as real subprocesses against the session's
redis-server, with what they create checked through the real HTTP app (tests/api_helpers.py).

Passwords go in through `--password-stdin`, or through a pseudo-terminal where getpass itself is
under test. Every run also checks that no password and no token leaks into its output (a token
only on `token create`'s standard output, where it belongs).
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from queues.embedded import EmbeddedRedis
from queues.keys import Keys
from router import cli
from router.auth import Role
from tests.api_helpers import API, ApiHarness
from tests.routing_fixtures import CONFIG

ROOT = Path(__file__).resolve().parent.parent
GOOD_PASSWORD = "Tr0ub4dor&3-horse"
OTHER_PASSWORD = "purple-monkey-dishwasher"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def shows(self, secret: str) -> bool:
        return secret in self.out or secret in self.err


def _env() -> dict[str, str]:
    """The test's environment without any Redis or cityline setting of the developer's."""
    env = {
        k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("CITYLINE_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The commands' working directory: the default data_dir ("data") lands here, never in the
    repository, where a developer's own `cityline serve` may keep its Redis."""
    return tmp_path


@pytest.fixture
def cli_run(redis_url: str, workdir: Path):
    async def run(*args: str, stdin: str | None = None, redis: bool = True) -> Run:
        argv = [sys.executable, "-m", "router.cli", *args, "--config", str(CONFIG)]
        if redis:
            argv += ["--redis-url", redis_url]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            cwd=workdir,
            start_new_session=True,  # no controlling terminal: getpass cannot ask anyone
        )
        data = stdin.encode() if stdin is not None else None
        out, err = await asyncio.wait_for(proc.communicate(data), 60)
        assert proc.returncode is not None
        result = Run(proc.returncode, out.decode(), err.decode())
        assert "Traceback" not in result.err, result.err
        return result

    return run


async def _login(api: ApiHarness, name: str, password: str) -> tuple[int, dict]:
    client = await api.client()
    resp = await client.post(f"{API}/auth/login", json={"username": name, "password": password})
    return resp.status, await resp.json()


async def _me_with_token(api: ApiHarness, token: str) -> tuple[int, dict]:
    client = await api.client()
    resp = await client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


def test_roles_are_the_roles_of_auth() -> None:
    assert set(cli.USER_ROLES) == {role.value for role in Role}


# --- users --------------------------------------------------------------------------------------


async def test_user_add_then_login_through_the_http_api(api: ApiHarness, cli_run) -> None:
    run = await cli_run(
        "user", "add", "maria", "--role", "supervisor", "--password-stdin",
        stdin=GOOD_PASSWORD + "\n",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "maria" in run.out and not run.shows(GOOD_PASSWORD)

    status, body = await _login(api, "maria", GOOD_PASSWORD)
    assert status == 200, body
    assert body["role"] == "supervisor" and body["agent_id"] is None
    status, _ = await _login(api, "maria", OTHER_PASSWORD)
    assert status == 401


async def test_agent_user_works_as_its_agent(api: ApiHarness, cli_run) -> None:
    run = await cli_run(
        "user", "add", "bartek", "--role", "agent", "--agent", "a2", "--password-stdin",
        stdin=GOOD_PASSWORD,  # no newline at the end: `printf %s "$PW" |` works too
    )  # fmt: skip
    assert run.code == 0, run.err
    status, body = await _login(api, "bartek", GOOD_PASSWORD)
    assert status == 200, body
    assert body["role"] == "agent" and body["agent_id"] == "a2"


async def test_passwd_changes_the_password_and_ends_sessions(api: ApiHarness, cli_run) -> None:
    run = await cli_run(
        "user", "add", "maria", "--role", "admin", "--password-stdin", stdin=GOOD_PASSWORD
    )
    assert run.code == 0, run.err
    session = await api.session("maria", password=GOOD_PASSWORD)
    assert (await session.get("/auth/me")).status == 200

    run = await cli_run("user", "passwd", "maria", "--password-stdin", stdin=OTHER_PASSWORD + "\n")
    assert run.code == 0, run.err
    assert not run.shows(OTHER_PASSWORD)

    assert (await _login(api, "maria", GOOD_PASSWORD))[0] == 401
    assert (await _login(api, "maria", OTHER_PASSWORD))[0] == 200
    resp = await session.get("/auth/me")  # the session from before the change
    assert resp.status == 401, await resp.text()


async def test_list_shows_users_without_secrets(
    api: ApiHarness, cli_run, redis: aioredis.Redis
) -> None:
    for args in (
        ("maria", "--role", "supervisor", "--password-stdin"),
        ("celina", "--role", "agent", "--agent", "a3", "--password-stdin"),
        ("portal", "--role", "intake", "--no-password"),
    ):
        run = await cli_run("user", "add", *args, stdin=GOOD_PASSWORD)
        assert run.code == 0, run.err

    run = await cli_run("user", "list")
    assert run.code == 0, run.err
    lines = {line.split()[0]: line.split() for line in run.out.splitlines()}
    assert lines["USER"][:4] == ["USER", "ROLE", "AGENT", "PASSWORD"]
    assert lines["maria"][1:4] == ["supervisor", "-", "yes"]
    assert lines["celina"][1:4] == ["agent", "a3", "yes"]
    assert lines["portal"][1:4] == ["intake", "-", "no"]
    stored_hash = await redis.hget(Keys().user("maria"), "password_hash")
    assert stored_hash and stored_hash.startswith("$argon2")
    assert not run.shows(GOOD_PASSWORD) and not run.shows(stored_hash) and "$argon2" not in run.out


async def test_remove_deletes_the_user_and_its_tokens(api: ApiHarness, cli_run) -> None:
    run = await cli_run(
        "user", "add", "maria", "--role", "supervisor", "--password-stdin", stdin=GOOD_PASSWORD
    )
    assert run.code == 0, run.err
    token = (await cli_run("token", "create", "maria")).out.strip()
    assert (await _me_with_token(api, token))[0] == 200

    run = await cli_run("user", "remove", "maria")
    assert run.code == 0, run.err
    assert "1 token revoked" in run.out

    assert (await _login(api, "maria", GOOD_PASSWORD))[0] == 401
    assert (await _me_with_token(api, token))[0] == 401
    assert "maria" not in (await cli_run("user", "list")).out

    run = await cli_run("user", "remove", "maria")
    assert run.code == 1
    assert run.err_lines == ["cityline: error: no user 'maria'"]


async def test_removing_a_configured_user_says_serve_brings_it_back(cli_run) -> None:
    run = await cli_run(
        "user", "add", "anna", "--role", "agent", "--agent", "a1", "--password-stdin",
        stdin=GOOD_PASSWORD,
    )  # fmt: skip
    assert run.code == 0, run.err
    run = await cli_run("user", "remove", "anna")
    assert run.code == 0, run.err
    assert "configuration" in run.err


# --- tokens -------------------------------------------------------------------------------------


async def test_token_create_authenticates_and_revoke_ends_it(api: ApiHarness, cli_run) -> None:
    run = await cli_run("user", "add", "portal", "--role", "intake", "--no-password")
    assert run.code == 0, run.err

    created = await cli_run("token", "create", "portal", "--label", "city web portal")
    assert created.code == 0, created.err
    assert len(created.out.splitlines()) == 1  # the token, alone on its line
    token = created.out.strip()
    assert len(token) >= 43 and " " not in token
    assert token not in created.err
    assert "will not be shown again" in created.err

    status, body = await _me_with_token(api, token)
    assert status == 200, body
    assert body == {"username": "portal", "role": "intake", "agent_id": None, "auth": "token"}
    bearer = await api.client()
    resp = await bearer.post(
        f"{API}/interactions",
        json={"channel": "chat", "queue": "chat", "subject": "Pothole on Main Street"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["ref"]

    listed = await cli_run("token", "list")
    assert listed.code == 0, listed.err
    assert not listed.shows(token)
    rows = [line.split(None, 2) for line in listed.out.splitlines()[1:]]
    assert len(rows) == 1 and rows[0][1] == "portal" and "city web portal" in rows[0][2]
    token_id = rows[0][0]
    assert token_id in created.err  # the id create gave is the one list shows
    assert (await cli_run("token", "list", "portal")).out == listed.out
    assert (await cli_run("token", "list", "nobody")).code == 1

    revoked = await cli_run("token", "revoke", token_id)
    assert revoked.code == 0, revoked.err
    assert "revoked" in revoked.out
    status, body = await _me_with_token(api, token)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await cli_run("token", "list")).out == ""

    again = await cli_run("token", "revoke", token_id)
    assert again.code == 1 and len(again.err_lines) == 1


async def test_revoke_by_the_token_itself(api: ApiHarness, cli_run) -> None:
    await api.user("maria", "supervisor")
    token = (await cli_run("token", "create", "maria")).out.strip()
    assert (await _me_with_token(api, token))[0] == 200
    run = await cli_run("token", "revoke", token)
    assert run.code == 0, run.err
    assert not run.shows(token)
    assert (await _me_with_token(api, token))[0] == 401


async def test_token_for_unknown_user_fails(cli_run) -> None:
    run = await cli_run("token", "create", "ghost")
    assert run.code == 1
    assert run.err_lines == ["cityline: error: no user 'ghost'"]
    assert run.out == ""


async def test_an_unknown_or_ambiguous_id_revokes_nothing(api: ApiHarness, cli_run) -> None:
    await api.user("maria", "supervisor")
    token = (await cli_run("token", "create", "maria")).out.strip()
    for given in ("0123456789ab", "abc", "not-a-token"):
        run = await cli_run("token", "revoke", given)
        assert run.code in (1, 2) and len(run.err_lines) == 1, run.err
    assert (await _me_with_token(api, token))[0] == 200


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["--role", "agent", "--password-stdin"], GOOD_PASSWORD, 2, "needs an agent id"),
        (["--role", "agent", "--agent", "zz", "--password-stdin"], GOOD_PASSWORD, 2,
         "unknown agent 'zz'"),
        (["--role", "supervisor", "--agent", "a1", "--password-stdin"], GOOD_PASSWORD, 2,
         "--agent is only for role agent"),
        (["--role", "admin", "--password-stdin"], "short", 2, "at least 8 characters"),
        (["--role", "admin", "--password-stdin"], "", 2, "no password on standard input"),
        (["--role", "admin", "--password-stdin"], f"{GOOD_PASSWORD}\n{GOOD_PASSWORD}\n", 2,
         "one line"),
        (["--role", "admin"], "", 2, "--password-stdin"),  # no terminal to ask on
    ],
)  # fmt: skip
async def test_user_add_refuses_bad_input(
    cli_run, redis: aioredis.Redis, args: list[str], stdin: str, code: int, message: str
) -> None:
    run = await cli_run("user", "add", "maria", *args, stdin=stdin)
    assert run.code == code, run.err
    assert len(run.err_lines) == 1 and message in run.err, run.err
    assert run.err.startswith("cityline: error: ")
    assert not await redis.exists(Keys().user("maria"))
    if len(stdin) >= 8:
        assert not run.shows(stdin.strip())


async def test_user_add_refuses_an_unknown_role(cli_run, redis: aioredis.Redis) -> None:
    run = await cli_run("user", "add", "maria", "--role", "mayor", "--password-stdin", stdin="x")
    assert run.code == 2
    assert "invalid choice: 'mayor'" in run.err_lines[-1]
    assert not await redis.exists(Keys().user("maria"))


async def test_user_add_refuses_a_bad_name(cli_run) -> None:
    run = await cli_run("user", "add", "a b", "--role", "admin", "--no-password")
    assert run.code == 2 and len(run.err_lines) == 1, run.err


async def test_adding_an_existing_user_fails_and_keeps_it(api: ApiHarness, cli_run) -> None:
    run = await cli_run(
        "user", "add", "maria", "--role", "admin", "--password-stdin", stdin=GOOD_PASSWORD
    )
    assert run.code == 0, run.err
    run = await cli_run(
        "user", "add", "maria", "--role", "agent", "--agent", "a1", "--password-stdin",
        stdin=OTHER_PASSWORD,
    )  # fmt: skip
    assert run.code == 1
    assert len(run.err_lines) == 1 and "user 'maria' exists" in run.err
    status, body = await _login(api, "maria", GOOD_PASSWORD)
    assert status == 200 and body["role"] == "admin"


async def test_passwd_refuses_unknown_user_and_short_password(api: ApiHarness, cli_run) -> None:
    run = await cli_run("user", "passwd", "ghost", "--password-stdin", stdin=GOOD_PASSWORD)
    assert run.code == 1 and run.err_lines == ["cityline: error: no user 'ghost'"]
    await api.user("maria", "admin", password=GOOD_PASSWORD)
    run = await cli_run("user", "passwd", "maria", "--password-stdin", stdin="1234567")
    assert run.code == 2 and len(run.err_lines) == 1 and "at least 8" in run.err
    assert (await _login(api, "maria", GOOD_PASSWORD))[0] == 200


async def test_a_password_is_never_an_argument(cli_run) -> None:
    run = await cli_run("user", "add", "maria", "--role", "admin", "--password", GOOD_PASSWORD)
    assert run.code == 2
    assert "unrecognized arguments" in run.err


async def test_debug_logging_shows_no_secret(api: ApiHarness, cli_run) -> None:
    run = await cli_run(
        "user", "add", "maria", "--role", "admin", "--password-stdin", "--log-level", "debug",
        stdin=GOOD_PASSWORD,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "user added user=maria" in run.err  # the log is on, and it says what happened
    assert not run.shows(GOOD_PASSWORD)
    run = await cli_run("token", "create", "maria", "--log-level", "debug")
    token = run.out.strip()
    assert run.code == 0 and token and token not in run.err
    run = await cli_run("token", "revoke", token, "--log-level", "debug")
    assert run.code == 0 and not run.shows(token)


# --- the password prompt (getpass on a real pseudo-terminal) ------------------------------------

# The child becomes a session leader and takes the pty as its controlling terminal, so getpass
# opens it as /dev/tty exactly as on an operator's terminal.
_WITH_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'router.cli', *sys.argv[1:]])"
)


def _run_on_terminal(args: list[str], answers: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, typing each answer after a password prompt."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITH_TERMINAL, *args],
        stdin=slave, stdout=slave, stderr=slave, env=_env(), cwd=cwd, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60

    def read_some() -> bool:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        nonlocal seen
        seen += chunk
        return bool(chunk)

    try:
        for answer in answers:
            prompts = seen.count(b"assword")
            while seen.count(b"assword") == prompts and read_some():
                pass
            os.write(master, answer.encode() + b"\n")
        while read_some():
            pass
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, seen.decode(errors="replace")


async def test_password_asked_twice_on_the_terminal(
    api: ApiHarness, redis_url: str, workdir: Path
) -> None:
    args = ["user", "add", "maria", "--role", "admin", "--config", str(CONFIG),
            "--redis-url", redis_url]  # fmt: skip
    code, screen = await asyncio.to_thread(
        _run_on_terminal, args, [GOOD_PASSWORD, GOOD_PASSWORD], workdir
    )
    assert code == 0, screen
    assert "New password for maria" in screen and "Repeat" in screen
    assert GOOD_PASSWORD not in screen  # not echoed
    assert (await _login(api, "maria", GOOD_PASSWORD))[0] == 200


async def test_two_different_passwords_change_nothing(
    api: ApiHarness, redis_url: str, workdir: Path
) -> None:
    await api.user("maria", "admin", password=GOOD_PASSWORD)
    args = ["user", "passwd", "maria", "--config", str(CONFIG), "--redis-url", redis_url]
    code, screen = await asyncio.to_thread(
        _run_on_terminal, args, [OTHER_PASSWORD, OTHER_PASSWORD + "x"], workdir
    )
    assert code == 2, screen
    assert "the two passwords differ" in screen and "Traceback" not in screen
    assert OTHER_PASSWORD not in screen
    assert (await _login(api, "maria", GOOD_PASSWORD))[0] == 200


# --- finding Redis ------------------------------------------------------------------------------


async def test_no_redis_anywhere_is_a_usage_error(cli_run) -> None:
    run = await cli_run("user", "list", redis=False)
    assert run.code == 2
    assert len(run.err_lines) == 1
    assert "REDIS_URL" in run.err and "--redis-url" in run.err


async def test_an_unreachable_redis_is_one_line(cli_run, workdir: Path) -> None:
    dead = workdir / "dead.sock"
    run = await cli_run("user", "list", "--redis-url", f"unix://{dead}", redis=False)
    assert run.code == 1 and len(run.err_lines) == 1
    assert "cannot reach Redis" in run.err


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # short: the socket path must fit in a sockaddr_un
    path = tmp_path_factory.mktemp("dd")
    if len(str(path / "redis" / "redis.sock")) > 100:
        pytest.skip("temporary directory too deep for a unix socket path")
    return path


async def test_uses_the_embedded_redis_of_a_local_serve(cli_run, data_dir: Path) -> None:
    server = EmbeddedRedis(data_dir / "redis", appendonly=False)
    server.start()
    try:
        run = await cli_run(
            "user", "add", "maria", "--role", "admin", "--password-stdin",
            "--data-dir", str(data_dir), stdin=GOOD_PASSWORD, redis=False,
        )  # fmt: skip
        assert run.code == 0, run.err
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert await client.hget(Keys().user("maria"), "role") == "admin"
        finally:
            await client.aclose()
        listed = await cli_run("user", "list", "--data-dir", str(data_dir), redis=False)
        assert "maria" in listed.out
    finally:
        server.stop()


async def test_a_socket_nobody_answers_on_is_a_usage_error(cli_run, data_dir: Path) -> None:
    (data_dir / "redis").mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(data_dir / "redis" / "redis.sock"))  # exists, but nobody listens
    stale.close()
    run = await cli_run("user", "list", "--data-dir", str(data_dir), redis=False)
    assert run.code == 2 and len(run.err_lines) == 1, run.err
    assert "no Redis answers" in run.err and "REDIS_URL" in run.err
