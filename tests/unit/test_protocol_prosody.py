"""`pitch` and `energy` on the wire (issue 19): parsed for speak, speak-start and synthesize,
held to 0.5..2 with an error naming the field, and handed to the engine as SynthesisParams."""

from __future__ import annotations

import pytest
from utterd.daemon.protocol import ProtocolError, parse_request, request_frames
from utterd.daemon.settings import LimitsSettings
from utterd.models.voice import MAX_PROSODY_RATIO, MIN_PROSODY_RATIO

LIMITS = LimitsSettings(max_text_chars=100)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("speak", {"text": "你好"}),
        ("synthesize", {"text": "你好"}),
        ("speak-start", {}),
    ],
)
def test_pitch_and_energy_reach_the_synthesis_parameters(kind: str, data: dict[str, str]) -> None:
    message = parse_request(
        request_frames(kind, {**data, "pitch": 1.25, "energy": 0.75}), LIMITS
    ).message
    params = message.synthesis_params()  # type: ignore[union-attr]
    assert (params.pitch, params.energy) == (1.25, 0.75)
    default = parse_request(request_frames(kind, data), LIMITS).message
    assert default.synthesis_params().pitch == 1.0  # type: ignore[union-attr]
    assert default.synthesis_params().energy == 1.0  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["pitch", "energy"])
def test_out_of_range_values_are_refused_naming_the_field(name: str) -> None:
    for value in (MIN_PROSODY_RATIO, MAX_PROSODY_RATIO):
        parse_request(request_frames("speak", {"text": "x", name: value}), LIMITS)
    for value in (MIN_PROSODY_RATIO - 0.01, MAX_PROSODY_RATIO + 0.01, 0, -1):
        with pytest.raises(ProtocolError) as error:
            parse_request(request_frames("speak", {"text": "x", name: value}), LIMITS)
        assert error.value.code == "invalid-value"
        assert name in str(error.value)
    with pytest.raises(ProtocolError) as error:
        parse_request(request_frames("speak", {"text": "x", name: "high"}), LIMITS)
    assert name in str(error.value)
