"""Coverage-guided fuzzing (atheris) of the parsers a request reaches before any synthesis.

Beside tests/test_e2e_fuzz.py (Hypothesis against the running daemon, in the suite), this
runs in-process and for as long as you let it, steered by coverage instead of by grammar:

- `split_envelope` + `parse_request`: only ProtocolError with a code from ERROR_CODES may
  escape, its error reply must encode and decode, and a parsed request must be one of
  REQUEST_TYPES;
- `parse_prewarm_entry` (`cache-warm` entries): only InvalidPrewarmList may escape;
- `parse_template` and `Template.render` (`text` with `slots`): only InvalidTemplate and
  InvalidSlots may escape.

Anything else escaping would be an `internal-error` reply from the daemon. atheris is not a
dependency of the project (it is only needed here):

    .venv/bin/pip install atheris
    mkdir -p /tmp/utterd-corpus
    nice -n 19 .venv/bin/python tests/fuzz/fuzz_protocol_atheris.py /tmp/utterd-corpus \\
        -dict=tests/fuzz/protocol.dict -max_total_time=600 -max_len=4096

An empty corpus folder is first given the seeds below; it keeps what the fuzzer learns for the
next run. The dictionary holds the tokens of the syntax (field names, `speaker=`, `{`, odd
digits) that coverage alone would take long to guess. A crash is written to `crash-<hash>` in
the current folder; pass that file instead of the folder to replay it. `-atheris_runs=N`
stops after N inputs. (The file is not named test_*, so pytest does not collect it.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

import atheris

with atheris.instrument_imports():
    from utterd.daemon import protocol
    from utterd.daemon.cache import prewarm
    from utterd.daemon.cache import templates as phrase_templates
    from utterd.daemon.settings import LimitsSettings

LIMITS: Final = LimitsSettings(max_text_chars=200)
"""A small text limit, so that the limit checks are reached by short inputs."""

_SEEDS: Final = (
    b'\x01{"type":"speak","id":1,"data":{"text":"Hi.","rate":1.5,"voice":"x","slots":{"a":"b"}}}',
    b'\x01{"type":"cache-warm","data":{"entries":["speaker=2 rate=1.1 | Door open."]}}',
    b'\x01{"type":"stop","id":"s","data":{"job":"j1","client":"self"}}',
    b'\x00\x00\xff\x00{"type":"synthesize","data":{"text":"{a} left.","format":"pcm"}}',
    b"\x02voice=en_US-joe-medium speaker=2 rate=1.1 volume=0.5 | Battery low.",
    b"\x02template=yes | Your balance is {amount}.",
    b"\x03Your balance is {amount}. {{Thanks}}\x00amount\x0042 dollars",
)
"""Starting points (target byte, then its input) written to an empty corpus folder."""


def _check_request(frames: list[bytes]) -> None:
    try:
        _, body = protocol.split_envelope(frames)
        request = protocol.parse_request(body, LIMITS)
    except protocol.ProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES, exc.code
        reply = protocol.error_reply(exc.request_id, exc.code, exc.message)
        json.loads(reply[0].decode("utf-8"))
        return
    assert request.type in protocol.REQUEST_TYPES
    assert isinstance(request.message, protocol.REQUEST_TYPES[request.type])


def _check_prewarm(entry: str) -> None:
    try:
        prewarm.parse_prewarm_entry(entry, "fuzz")
    except prewarm.InvalidPrewarmList:
        pass


def _check_template(text: str, slots: dict[str, str]) -> None:
    try:
        phrase_templates.parse_template(text).render(slots)
    except (phrase_templates.InvalidTemplate, phrase_templates.InvalidSlots):
        pass


def test_one_input(data: bytes) -> None:
    """One input: the first byte picks the target, the rest is its input."""
    if not data:
        return
    target, rest = data[0] % 4, data[1:]
    if target == 0:  # a DEALER's frames: the identity, then the frames split at 0xff 0x00
        _check_request([b"id", *rest.split(b"\xff\x00")])
    elif target == 1:  # one header frame, the common case
        _check_request([b"id", rest])
    else:
        # Strings arrive from JSON, so they are valid Unicode without lone surrogates.
        text, *pairs = rest.decode("utf-8", "replace").split("\x00")
        if target == 2:  # one `cache-warm` entry
            _check_prewarm(text)
        else:  # a template, then slot name / value pairs, NUL-separated
            _check_template(text, dict(zip(pairs[::2], pairs[1::2], strict=False)))


def _seed(argv: list[str]) -> None:
    folders = [Path(a) for a in argv[1:] if not a.startswith("-") and Path(a).is_dir()]
    for folder in folders[:1]:
        if not any(folder.iterdir()):
            for number, seed in enumerate(_SEEDS):
                (folder / f"seed-{number}").write_bytes(seed)


def main() -> None:
    for seed in _SEEDS:  # the seeds must pass before fuzzing starts
        test_one_input(seed)
    _seed(sys.argv)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
