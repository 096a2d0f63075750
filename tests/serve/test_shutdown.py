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

import numpy as np
import pytest
from conftest import BASIC, ROOT, TIMEOUT, WIDTH, basic_inputs, infer, slow_model, tc
from tritonclient.utils import InferenceServerException

from onnxpipe_runtime.serve import main



class ServerProcess:
    """`python -m onnxpipe_runtime.serve ...` on an ephemeral port; the port is read from its first line."""

    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onnxpipe_runtime.serve", *args, "--port", "0"],
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


def test_sigterm_finishes_in_flight_requests_then_exits_0(tmp_path):
    model = slow_model(tmp_path / "slow.onnx")
    server = ServerProcess(str(model), "--threads", "2", "--grace-s", "20")
    client = tc.InferenceServerClient(server.address)
    try:
        assert client.is_model_ready("slow", client_timeout=TIMEOUT)
        x = np.ones((1536, WIDTH), np.float32)  # slow_model is calibrated so this takes about 2.5 s
        t = tc.InferInput("x", list(x.shape), "FP32")
        t.set_data_from_numpy(x)
        with ThreadPoolExecutor(2) as ex:
            calls = [ex.submit(client.infer, "slow", [t], client_timeout=TIMEOUT) for _ in range(2)]
            time.sleep(1.0)  # both requests are in (even on a loaded machine): one running, one queued
            assert not any(c.done() for c in calls), "the model ran too fast for this test to mean anything"
            server.proc.send_signal(signal.SIGTERM)
            end = time.monotonic() + TIMEOUT
            while True:  # it stops accepting new calls...
                try:
                    client.is_server_live(client_timeout=2.0)
                except InferenceServerException:
                    break
                assert time.monotonic() < end, "still accepting calls after SIGTERM"
                time.sleep(0.05)
            for c in calls:  # ...and still answers the ones it had
                y = c.result(TIMEOUT).as_numpy("y")
                assert y.shape == x.shape and np.isfinite(y).all()
        rc = server.proc.wait(TIMEOUT)
        assert rc == 0, server.proc.stderr.read() if server.proc.stderr else ""
    finally:
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
