"""The one error type users see: a message that says where, and exit code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the user (a file, a spec, a version): reported as one line, exit 2."""


class KnowledgeError(Exception):
    """The knowledge base itself is malformed: says which file and which entry."""
