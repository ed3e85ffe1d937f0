"""Shared fixtures. tests/ is not a package (verl's wheel installs a top-level `tests`), so helper
modules here are imported by putting this folder on sys.path."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from judge_server import FakeJudgeServer  # noqa: E402


@pytest.fixture(scope="session")
def judge_server():
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (reset before each use by the caller)."""
    server = FakeJudgeServer().start()
    yield server
    server.stop()
