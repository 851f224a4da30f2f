"""Errors raised while reading, checking or reducing raw exposures."""

from __future__ import annotations


class FrameError(ValueError):
    """A raw frame, fiber map or exposure folder cannot be used as it is.

    The message always names the file (or folder) and says what is wrong and
    what to do. It derives from :class:`ValueError`, so the command line shows
    it as a one-line error with exit status 2.
    """


class MissingFrameError(FrameError, FileNotFoundError):
    """A frame the reduction needs (an arm's flat, arc or science exposure) is not in the folder."""


class FrameWarning(UserWarning):
    """Something odd in a raw file that the reduction works around (e.g. a missing GAIN card)."""
