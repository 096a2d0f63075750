"""`python tests/serve/held_serve.py HOLD_DIR MODEL [serve flags]`: `onnxpipe serve` with an explicit hook for
shutdown tests. Every model run waits until HOLD_DIR/release exists, every inference request the server
accepts appends a line to HOLD_DIR/accepted, and HOLD_DIR/stopping appears once the server refuses new calls (after
the signal reached it), so a test knows what is in flight and when without guessing at timing."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from onnxpipe_runtime.serve import cli, server


def main() -> int:
    hold = Path(sys.argv[1])
    lock = threading.Lock()
    start = server.Server.start

    def held_start(self: server.Server) -> server.Server:
        started = start(self)
        for model in self.models.values():
            model.batcher.pipe = _Held(model.batcher.pipe, hold / "release")

        def accepted(name: str) -> None:
            with lock, open(hold / "accepted", "a", encoding="utf-8") as f:
                f.write(name + "\n")

        self.on_accepted = accepted
        return started

    stop = server.Server.stop

    def noted_stop(self: server.Server, grace: float | None = None) -> None:
        def note() -> None:  # once new calls are refused, not merely once stop() was called
            self._servicer.stopping.wait()
            (hold / "stopping").touch()

        threading.Thread(target=note, daemon=True).start()
        stop(self, grace)

    server.Server.start = held_start  # type: ignore[method-assign]
    server.Server.stop = noted_stop  # type: ignore[method-assign]
    return cli.main(sys.argv[2:])


class _Held:
    def __init__(self, pipe: Any, release: Path):
        self._pipe, self._release = pipe, release
        self.signature = pipe.signature

    def validate(self, given: Any) -> Any:
        return self._pipe.validate(given)

    def run(self, feeds: Any) -> Any:
        while not self._release.exists():
            time.sleep(0.005)
        return self._pipe.run(feeds)


if __name__ == "__main__":
    sys.exit(main())
