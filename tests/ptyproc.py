"""A process on a pseudo-terminal, as a user at a terminal runs it: it can ask passwords
(getpass reads /dev/tty), gets SIGINT from Ctrl-C, and sees a tty on stdin."""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import signal
import threading
import time


class PtyProcess:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None = None) -> None:
        program = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0], path=env["PATH"])
        assert program, f"{argv[0]} not found"
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (the parent may have threads)
            try:
                if cwd:
                    os.chdir(cwd)
                os.execve(program, argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.returncode: int | None = None
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            with self._lock:
                self._buf += data

    def output(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace").replace("\r\n", "\n")

    def expect(self, text: str, timeout: float = 30.0, start: int = 0) -> int:
        """Wait until *text* appears after offset *start*; the offset just after it."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.output()
            at = out.find(text, start)
            if at >= 0:
                return at + len(text)
            if self.poll() is not None and text not in self.output()[start:]:
                raise AssertionError(f"exited ({self.returncode}) before {text!r}:\n{out}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{out}")
            time.sleep(0.02)

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n{self.output()}")
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def close(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and release the terminal."""
        if self.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.wait(10)
            except AssertionError:
                self.signal(signal.SIGKILL)
                self.wait(5)
        with contextlib.suppress(OSError):
            os.close(self.fd)
