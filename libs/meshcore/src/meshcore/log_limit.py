"""Warnings a stranger or a member can cause, at a bounded rate: each refusal is one line,
at most `per_minute` lines a minute; the rest are counted and said in one line when the
minute is over (at the next refusal)."""

from __future__ import annotations

import logging
import time


class LimitedLog:
    def __init__(self, logger: logging.Logger, per_minute: int, held_back: str) -> None:
        """`held_back`: the summary line, with one %d for how many were not logged."""
        self.logger = logger
        self.per_minute = per_minute
        self.held_back = held_back
        self._start, self._logged, self._held = 0.0, 0, 0

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)

    def info(self, message: str, *args: object) -> None:
        self.log(logging.INFO, message, *args)

    def log(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._start > 60:
            if self._held:
                self.logger.log(level, self.held_back, self._held)
            self._start, self._logged, self._held = now, 0, 0
        if self._logged < self.per_minute:
            self.logger.log(level, message, *args)
            self._logged += 1
        else:
            self._held += 1
