"""The server as a process: `python -m onnxpipe_runtime.serve`, SIGTERM drains in-flight requests, exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import BASIC, ROOT, TIMEOUT, basic_inputs, infer, tc
from tritonclient.utils import InferenceServerException

from onnxpipe_runtime.serve import main



class ServerProcess:
    """`python -m onnxpipe_runtime.serve ...` (or ``launcher``) on an ephemeral port, read from its first line."""

    def __init__(self, *args: str, launcher: list[str] | None = None, env: dict[str, str] | None = None):
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, *(launcher or ["-m", "onnxpipe_runtime.serve"]), *args, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(TIMEOUT) or not self.lines:
            self.kill()
            raise AssertionError(f"server did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
        m = re.search(r"listening on ([\d.]+):(\d+)", self.lines[0])
        assert m, self.lines
        self.address = f"{m.group(1)}:{m.group(2)}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def terminate_and_wait(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(TIMEOUT)
        finally:
            self.kill()
        return rc, self.proc.stderr.read() if self.proc.stderr else ""


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _until(condition, what: str) -> None:
    end = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_sigterm_finishes_accepted_requests_refuses_later_ones_then_exits_0(tmp_path):
    """Every run is held by an explicit hook (tests/serve/held_serve.py) until the test releases it: the requests
    accepted before SIGTERM all finish, every call after it is UNAVAILABLE, none is CANCELLED."""
    hold = tmp_path / "hold"
    hold.mkdir()
    server = ServerProcess(str(hold), str(BASIC), "--grace-s", "20", "--log-level", "WARNING",
                           launcher=[str(ROOT / "tests" / "serve" / "held_serve.py")])
    client = tc.InferenceServerClient(server.address)

    def accepted() -> int:
        return len((hold / "accepted").read_text().splitlines()) if (hold / "accepted").exists() else 0

    try:
        with ThreadPoolExecutor(12) as ex:
            calls = [ex.submit(infer, client, "basic", basic_inputs(1, seed=i)) for i in range(8)]
            _until(lambda: accepted() == 8, "8 requests accepted")  # one held in its run, seven queued
            server.proc.send_signal(signal.SIGTERM)
            # the signal is handled asynchronously: a request sent before the server starts to stop is accepted
            # (and held), so probe only once it has
            _until(lambda: (hold / "stopping").exists(), "the server to start stopping after SIGTERM")

            def refused_unavailable() -> bool:
                try:
                    infer(client, "basic", basic_inputs(1))
                except InferenceServerException as e:
                    assert e.status() == "StatusCode.UNAVAILABLE", (e.status(), e.message())
                    return True
                raise AssertionError("a request after SIGTERM was run")  # the model is held: it cannot be

            _until(refused_unavailable, "the server to refuse new requests after SIGTERM")
            later = [ex.submit(infer, client, "basic", basic_inputs(1)) for _ in range(4)]
            for f in later:
                with pytest.raises(InferenceServerException) as e:
                    f.result(TIMEOUT)
                assert e.value.status() == "StatusCode.UNAVAILABLE" and "[CLOSED]" in e.value.message()
            assert not any(c.done() for c in calls), [c.exception() for c in calls if c.done()]
            (hold / "release").touch()
            for c in calls:  # ...and still answers the ones it had
                assert c.result(TIMEOUT).as_numpy("score").shape == (1, 3)
        rc = server.proc.wait(TIMEOUT)
        assert rc == 0, server.proc.stderr.read() if server.proc.stderr else ""
    finally:
        (hold / "release").touch()
        client.close()
        server.kill()


def test_sigterm_when_idle_and_module_entry_point():
    server = ServerProcess(str(BASIC), "--name", "renamed")
    try:
        client = tc.InferenceServerClient(server.address)
        assert client.is_model_ready("renamed", client_timeout=TIMEOUT)
        assert infer(client, "renamed", basic_inputs(1)).as_numpy("label").shape == (1,)
        client.close()
    finally:
        rc, err = server.terminate_and_wait()
    assert rc == 0 and "stopped" in err


@pytest.mark.parametrize("argv,code,needle", [
    ([str(ROOT / "tests" / "fixtures" / "corrupt.onnx")], 2, "[MODEL_LOAD]"),
    ([str(ROOT / "tests" / "fixtures" / "missing.onnx")], 2, "cannot read it"),
    ([str(BASIC), str(BASIC)], 2, "model name 'basic' is used twice"),
    ([str(BASIC), "--name", "a", "--name", "b"], 2, "--name given 2 time(s) for 1 model(s)"),
    ([str(BASIC), "--tls-cert", "x.pem"], 2, "--tls-cert and --tls-key go together"),
    (["--port", "1"], 2, "usage"),
])
def test_main_refuses_to_start(capsys, argv, code, needle):
    assert main(argv) == code
    captured = capsys.readouterr()
    assert needle in captured.err


def test_main_help_returns_0(capsys):
    assert main(["--help"]) == 0
    assert "--max-delay-ms" in capsys.readouterr().out
