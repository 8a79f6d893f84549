"""Errors raised by the domain when a command breaks one of its rules."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a rule of the domain; the message says which and why."""


class PartitionError(DomainError):
    """The clips of a video would no longer partition ``[0, frame_count)`` exactly."""
