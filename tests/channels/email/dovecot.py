"""A throwaway Dovecot IMAP server for tests: own config, own dirs, loopback, ephemeral port.

Everything lives in one temporary directory (config, passwd-file, maildir,
base_dir, state_dir, log). As root, Dovecot drops to its `dovecot`/`dovenull`
users and refuses uid 0 for mail, so the maildir belongs to `dovecot` and the
directory is world-traversable (pytest's tmp_path parents are 0700, hence a
mkdtemp of its own); as any other user everything runs as that user.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.processes import stop

DOVECOT = Path("/usr/sbin/dovecot")
USER = "support"
PASSWORD = "imap-test-password"

CONFIG = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = helpdesk-test-{instance}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{base}/mail/%u
log_path = {base}/dovecot.log
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@dataclass
class Dovecot:
    base: Path
    port: int
    process: subprocess.Popen[bytes]
    user: str = USER
    password: str = PASSWORD

    def imap(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        client.login(self.user, self.password)
        return client

    @contextlib.contextmanager
    def session(self) -> Iterator[imaplib.IMAP4]:
        client = self.imap()
        try:
            yield client
        finally:
            client.logout()

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.session() as client:
            client.create(folder)  # NO when it exists; fine
            typ, data = client.append(folder, None, None, raw.replace(b"\n", b"\r\n"))
            assert typ == "OK", data

    def recreate(self, folder: str) -> None:
        """Delete and create the folder: the server gives it a new UIDVALIDITY."""
        with self.session() as client:
            assert client.delete(folder)[0] == "OK"
            assert client.create(folder)[0] == "OK"

    def uidvalidity(self, folder: str) -> int:
        with self.session() as client:
            typ, data = client.status(folder, "(UIDVALIDITY)")
            assert typ == "OK", data
        raw = data[0]
        assert isinstance(raw, bytes)
        return int(raw.split(b"UIDVALIDITY")[1].strip(b" ()"))

    def log(self) -> str:
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accounts() -> tuple[str, str, int, int]:
    """(internal user, login user, mail uid, mail gid)."""
    if os.getuid() != 0:
        me = pwd.getpwuid(os.getuid()).pw_name
        return me, me, os.getuid(), os.getgid()
    for internal, login in (("dovecot", "dovenull"), ("dovecot", "nobody"), ("nobody", "nobody")):
        try:
            owner = pwd.getpwnam(internal)
            pwd.getpwnam(login)
        except KeyError:
            continue
        return internal, login, owner.pw_uid, owner.pw_gid
    raise RuntimeError("no unprivileged user for Dovecot (need dovecot or nobody)")


def _ready(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            if s.recv(64).startswith(b"* OK"):
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    internal, login, uid, gid = _accounts()
    base = Path(tempfile.mkdtemp(prefix="helpdesk-dovecot-"))
    base.chmod(0o755)
    try:
        (base / "mail").mkdir()
        os.chown(base / "mail", uid, gid)
        (base / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        for _attempt in range(3):  # the port is chosen before Dovecot binds it
            port = _free_port()
            config = base / "dovecot.conf"
            config.write_text(
                CONFIG.format(
                    base=base,
                    instance=uuid.uuid4().hex[:8],
                    internal=internal,
                    login=login,
                    uid=uid,
                    gid=gid,
                    port=port,
                )
            )
            process = subprocess.Popen(
                [str(DOVECOT), "-F", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if _ready(port, process, time.monotonic() + 15):
                break
            process.kill()
            process.wait()
        else:
            raise RuntimeError(f"dovecot did not start: {(base / 'dovecot.log').read_text()}")
        server = Dovecot(base=base, port=port, process=process)
        try:
            yield server
        finally:
            stop(process, grace=10)
            if process.stderr is not None:
                process.stderr.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
