"""The CLI's fast paths."""

import subprocess
import sys

import pytest

from pipeline.cli import build_parser, main

COMMANDS = (
    "run",
    "titanic",
    "component",
    "deploy",
    "runs",
    "artifacts",
    "lineage",
    "stats",
    "schema",
    "reproduce",
    "diff",
    "version",
)


def test_help_lists_commands_without_importing_tensorflow():
    code = "import sys; from pipeline.cli import build_parser; build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    help_text = build_parser().format_help()
    for command in COMMANDS:
        assert command in help_text


def test_every_command_documents_itself(capsys):
    import pytest

    for command in COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: tfpipe {command}" in out
        if command != "version":  # each command's help ends with examples to copy
            assert "\nexamples:\n  tfpipe " + command in out, out


def test_component_help_lists_each_standard_components_inputs_and_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["component", "--help"])
    out = capsys.readouterr().out
    listed = out.split("standard components")[1]
    assert "  evaluator\n    inputs:  model: Model, examples: Examples" in listed
    assert "baseline: PushedModel (optional) (found: latest_pushed_model)" in listed
    assert (
        "  pusher\n    inputs:  model: Model, blessing: ModelBlessing\n    outputs: pushed_model: PushedModel" in listed
    )


def test_a_mistyped_option_gets_its_command_usage_and_a_suggestion(capsys):
    import pytest

    with pytest.raises(SystemExit) as done:
        main(["run", "--no-cahce", "pipeline.yaml"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tfpipe run ") and err.strip().endswith(
        "tfpipe run: error: unrecognized argument --no-cahce (did you mean --no-cache?)"
    ), err


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: tfpipe" in capsys.readouterr().out


def test_no_cache_takes_component_names_and_leaves_the_config_path(tmp_path, capsys):

    from pipeline.cli import _fix_no_cache

    parser = build_parser()
    for argv, config, no_cache in (
        (["run", "--no-cache", "examples/titanic/pipeline.yaml"], "examples/titanic/pipeline.yaml", []),
        (["run", "--no-cache", "trainer", "pusher", "p.yaml"], "p.yaml", ["trainer", "pusher"]),
        (["run", "p.yaml", "--no-cache", "trainer"], "p.yaml", ["trainer"]),
        (["run", "p.yaml"], "p.yaml", None),
    ):
        args = parser.parse_args(argv)
        _fix_no_cache(parser, args)
        assert (args.config, args.no_cache) == (config, no_cache), argv
    # A typo is refused once the pipeline is read (its instances are the names): one line, exit 2, nothing run.
    from tests.conftest import tiny_titanic

    config = tiny_titanic(tmp_path)
    assert main(["run", "--no-cache", "trainr", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no component 'trainr'" in err and "did you mean 'trainer'?" in err
    assert not (tmp_path / "root").exists()


def test_read_only_commands_never_create_a_store(tmp_path, capsys):
    from tests.conftest import tiny_titanic

    config = tiny_titanic(tmp_path)
    for argv in (
        ["runs", "--config", str(config)],
        ["artifacts", "--config", str(config)],
        ["lineage", "1", "--config", str(config)],
        ["diff", "a", "b", "--config", str(config)],
        ["lineage", "1", "--metadata", str(tmp_path / "elsewhere.sqlite")],
    ):
        assert main(argv) == 1, argv
        assert "tfpipe: error: no MLMD store at" in capsys.readouterr().err
    assert not (tmp_path / "root").exists() and not (tmp_path / "elsewhere.sqlite").exists()


def test_a_closed_pipe_is_not_an_error():
    from pathlib import Path

    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "tfpipe"), "version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # like `| head` that has read all it wants
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_an_unexpected_error_says_whether_it_is_a_bug_in_tfpipe_or_in_the_users_code(capsys, monkeypatch, tmp_path):
    import pipeline.cli as cli

    # tfpipe's own code given what it never expects: a helper that takes an exception handed the parsed arguments
    monkeypatch.setattr(cli, "_cmd_version", cli._user_frame)
    assert main(["version"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "tfpipe: internal error: AttributeError:" in err
    assert "This is a bug in tfpipe: please report it with the traceback above." in err

    module = tmp_path / "user_code.py"
    module.write_text("def fn(args):\n    raise ZeroDivisionError('a user bug')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import user_code
    finally:
        sys.path.remove(str(tmp_path))
    monkeypatch.setattr(cli, "_cmd_version", user_code.fn)
    assert main(["version"]) == 1
    err = capsys.readouterr().err
    assert f"tfpipe: error: your code raised ZeroDivisionError at {module}:2: a user bug" in err
    assert "bug in tfpipe" not in err


@pytest.mark.quiet  # times each refusal
def test_a_prefect_api_that_is_down_or_silent_is_one_line_before_anything_runs(tmp_path):
    import os
    import socket
    import threading
    import time

    from tests.conftest import tiny_titanic

    config = tiny_titanic(tmp_path / "p")
    config.write_text(config.read_text() + "metadata_timeout: 2\n")
    silent = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: [silent.accept() for _ in range(4)], daemon=True).start()
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    for port, why in ((closed_port, "cannot be reached"), (silent.getsockname()[1], "did not answer in 2 s")):
        env = dict(os.environ, PREFECT_API_URL=f"http://127.0.0.1:{port}/api")
        started = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr[-2000:]
        assert f"tfpipe: error: the Prefect API at http://127.0.0.1:{port}/api {why}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and time.time() - started < 30
    assert not (tmp_path / "p" / "root").exists()  # nothing ran, nothing was recorded


def test_only_a_reader_that_went_away_makes_a_broken_pipe_quiet():
    # `tfpipe lineage ... | head` exits 0 quietly; a broken pipe of tfpipe's own (a helper process that
    # died) must not pass for that and turn a failed run into exit status 0.
    code = "import sys, time; time.sleep(1); from pipeline.cli import _stdout_closed; sys.stderr.write(str(_stdout_closed()))"
    for reader_gone in (True, False):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if reader_gone:
            proc.stdout.close()
        _, err = proc.communicate(timeout=60)
        assert err.strip() == str(reader_gone), err
