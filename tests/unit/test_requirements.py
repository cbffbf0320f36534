"""tests/support.py `require`, `require_program`, `require_module`: a missing outside dependency skips a
test, except under CI where it fails."""

from __future__ import annotations

import pytest

from tests.support import CI_ENV, require, require_module, require_program


def test_a_missing_dependency_skips_outside_ci(monkeypatch):
    monkeypatch.delenv(CI_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="frobnicator is not available"):
        require(None, "frobnicator")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_a_missing_dependency_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv(CI_ENV, value)
    with pytest.raises(pytest.fail.Exception, match=f"frobnicator is required: {CI_ENV} is set"):
        require("", "frobnicator")


def test_ci_set_to_zero_or_empty_is_not_ci(monkeypatch):
    for value in ("", "0"):
        monkeypatch.setenv(CI_ENV, value)
        with pytest.raises(pytest.skip.Exception):
            require(False, "frobnicator")


def test_a_present_dependency_is_returned_and_nothing_happens(monkeypatch):
    monkeypatch.setenv(CI_ENV, "1")
    require(True, "python")
    assert require_program("sh").endswith("/sh")
    with pytest.raises(pytest.fail.Exception, match="no-such-program-here"):
        require_program("no-such-program-here")


def test_a_program_given_by_path_is_used_even_when_it_is_not_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv(CI_ENV, "1")
    tool = tmp_path / "frobnicate"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert require_program("frobnicate", path=str(tool)) == str(tool)
    with pytest.raises(pytest.fail.Exception, match="frobnicate"):
        require_program("frobnicate", path=str(tmp_path / "absent"))


def test_a_python_module_is_required_by_name(monkeypatch):
    monkeypatch.setenv(CI_ENV, "1")
    assert require_module("json") == "json"
    with pytest.raises(pytest.fail.Exception, match="the Python module no_such_module_here is required"):
        require_module("no_such_module_here")
    monkeypatch.delenv(CI_ENV)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_here is not available"):
        require_module("no_such_module_here")
