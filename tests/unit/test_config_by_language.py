"""Config `voices.by_language` (issue 19): a mapping of language tags to voice ids, read from
YAML like `voices.backends`, with errors that name the key."""

from __future__ import annotations

import pytest
from utterd.daemon.config import ConfigError, settings_from_mapping
from utterd.daemon.settings import Settings


def test_by_language_is_read_and_empty_by_default() -> None:
    settings = settings_from_mapping(
        {"voices": {"by_language": {"zh": "zh_CN-baker-fastspeech2", "en-GB": "hibari-heart"}}},
        "c.yaml",
    )
    assert settings.voices.by_language == {
        "zh": "zh_CN-baker-fastspeech2",
        "en-GB": "hibari-heart",
    }
    assert Settings().voices.by_language == {}
    # Every entry commented out parses as null: the default rule, like an empty section.
    assert settings_from_mapping({"voices": {"by_language": None}}, "c").voices.by_language == {}


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("zh_CN-baker-fastspeech2", "voices.by_language"),
        (["zh"], "voices.by_language"),
        ({"zh": 3}, "voices.by_language.zh"),
        ({"zh": ""}, "voices.by_language.zh"),
        ({"": "hibari-heart"}, "voices.by_language."),
    ],
)
def test_a_bad_by_language_names_its_key(value: object, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_mapping({"voices": {"by_language": value}}, "/etc/utterd/config.yaml")
    assert error.value.key == key
    assert str(error.value).startswith(f"/etc/utterd/config.yaml: {key}: ")
