"""Image platforms Loopline builds for: one parser for the build and containerize steps."""

from __future__ import annotations

from steps.core.errors import ConfigError

KNOWN_PLATFORMS = ("linux/arm64", "linux/amd64")


def parse_platforms(value: str, flag: str = "--platforms") -> list[str]:
    """Split ``linux/arm64,linux/amd64`` into a list, checking each name.

    Raises:
        ConfigError: naming the flag, the unknown platform and the accepted ones.
    """
    platforms = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [p for p in platforms if p not in KNOWN_PLATFORMS]
    if not platforms or unknown:
        raise ConfigError(
            f"{flag}: unknown {unknown or value!r}; expected a comma-separated list of "
            f"{', '.join(KNOWN_PLATFORMS)}"
        )
    return platforms
