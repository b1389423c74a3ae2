"""Platform lists shared by the build and containerize steps."""

from __future__ import annotations

import pytest

from steps.core.errors import ConfigError
from steps.core.platforms import parse_platforms


def test_a_comma_separated_list_is_split_and_trimmed() -> None:
    assert parse_platforms("linux/amd64, linux/arm64") == ["linux/amd64", "linux/arm64"]
    assert parse_platforms("linux/arm64") == ["linux/arm64"]


@pytest.mark.parametrize("value", ["linux/ppc64le", "", " , ", "linux/arm64,windows/amd64"])
def test_unknown_or_empty_platforms_name_the_flag_and_the_accepted_ones(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_platforms(value, flag="--platform")
    assert str(caught.value).startswith("--platform: unknown")
    assert "linux/arm64, linux/amd64" in str(caught.value)
