"""The espeak-ng phonemizer's helper process: one request per line in, one answer per line out.

Run by `espeak_process.EspeakProcess` as `python -I -S espeak_worker.py BRIDGE DATA_DIR`, this
file needs nothing but the standard library and piper-tts's `espeakbridge` extension, loaded
from its file (importing the `piper` package would load onnxruntime too). espeak-ng has
memory-safety bugs that some texts reach (a segfault ends this process, not the daemon), keeps
one global voice, and is not thread-safe: one process serves one request at a time.

Request: `{"voice": "en-us", "text": "..."}`. Answer: `{"clauses": [[phonemes, terminator,
end_of_sentence], ...]}` or `{"error": "..."}`. The first line written is `{"ready": true}`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from types import ModuleType


def load_bridge(path: str) -> ModuleType:
    """piper-tts's espeakbridge extension, from its file."""
    loader = importlib.machinery.ExtensionFileLoader("espeakbridge", path)
    spec = importlib.util.spec_from_file_location("espeakbridge", path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def serve(bridge: ModuleType, lines_in: object, out: object) -> None:
    """Answer requests until stdin closes."""
    voice = None
    for line in lines_in:  # type: ignore[attr-defined]
        try:
            request = json.loads(line)
            if request["voice"] != voice:
                bridge.set_voice(request["voice"])
                voice = request["voice"]
            answer: dict[str, object] = {"clauses": bridge.get_phonemes(request["text"])}
        except Exception as exc:  # noqa: BLE001 - every failure goes back as an answer
            voice = None
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")  # type: ignore[attr-defined]
        out.flush()  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: espeak_worker.py ESPEAKBRIDGE_SO ESPEAK_DATA_DIR\n")
        return 2
    bridge = load_bridge(argv[1])
    bridge.initialize(argv[2])
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    serve(bridge, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
