"""The CLI's fast paths."""

import subprocess
import sys

from pipeline.cli import build_parser, main


def test_help_lists_commands_without_importing_tensorflow():
    code = "import sys; from pipeline.cli import build_parser; build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    help_text = build_parser().format_help()
    for command in ("run", "titanic", "component", "deploy", "runs", "artifacts", "lineage", "reproduce", "diff",
                    "version"):
        assert command in help_text


def test_every_command_documents_itself(capsys):
    import pytest

    for command in ("run", "titanic", "component", "deploy", "runs", "artifacts", "lineage", "reproduce", "diff",
                    "version"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert f"usage: tfpipe {command}" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: tfpipe" in capsys.readouterr().out
