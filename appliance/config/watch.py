"""A service's view of the config file: re-read when it changes, a broken file told apart.

Every long-running service holds one :class:`ConfigWatch`; the watchdog and the
LED keep working from the last good file (or from the one table still readable,
``partial``) while a person fixes a broken one.
"""

from __future__ import annotations

import logging
import time
import tomllib
from pathlib import Path
from typing import TypeVar

from ..config_keys import ConfigError, sections
from .model import Config, PathsConfig
from .reader import load_config, parse_table, read_bounded

log = logging.getLogger("sensor-bridge.config")

RELOAD_EVERY_S = 60.0  # ConfigWatch re-reads the file this often even when it looks unchanged

T = TypeVar("T")


class ConfigWatch:
    """The config file, re-read when it changes; tells a broken file apart from a good one.

    ``poll()`` returns the config while the file is valid and None while it is
    missing or invalid (``problems`` then says why). ``config`` keeps the last
    valid one and ``partial(LedConfig)`` what can still be read of a broken file, so
    a service knows where to write its status and which pin its LED is on.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config: Config | None = None
        self.problems: list[str] | None = ["not read yet"]
        self._seen: tuple[int, int, int] | None | str = "never"
        self._loaded_at = 0.0

    def poll(self) -> Config | None:
        try:
            st = self.path.stat()
            seen: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            seen = None
        if seen != self._seen or time.monotonic() - self._loaded_at > RELOAD_EVERY_S:
            self._seen, self._loaded_at = seen, time.monotonic()
            try:
                self.config, self.problems = load_config(self.path), None
            except ConfigError as exc:
                if self.problems != exc.problems:
                    log.error("%s", exc.report().replace("\n", " "))
                self.problems = exc.problems
        return None if self.problems else self.config

    def partial(self, model: type[T]) -> T | None:
        """Table ``model`` (``LedConfig``) of the file, if that table is valid, whatever the rest is."""
        try:
            raw = tomllib.loads(read_bounded(self.path).decode("utf-8"))
            name = next(name for name, section in sections(Config) if section.model is model)
            body = raw.get(name)
            if not isinstance(body, dict):
                return None
            return parse_table(model, body, self.path.parent)
        except (
            OSError,
            ValueError,
        ):  # ConfigError, TOMLDecodeError and UnicodeDecodeError are ValueErrors
            return None

    @property
    def paths(self) -> PathsConfig:
        if self.config:
            return self.config.paths
        return self.partial(PathsConfig) or PathsConfig()
