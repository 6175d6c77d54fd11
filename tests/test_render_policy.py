"""One render policy: render, eval, compare and the viewer all ask engine.render_policy.choose_renderer, which says
which renderer runs and why in exactly one log line."""
from __future__ import annotations

import logging

import pytest

from engine.cuda import cuda_unavailable_reason
from engine.errors import VbnfError
from engine.render_policy import choose_renderer


def policy_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vbnf.render"]


def test_one_log_line_names_the_path_and_why(caplog):
    caplog.set_level(logging.INFO, logger="vbnf")
    choice = choose_renderer()
    lines = policy_lines(caplog)
    assert lines == [f"render path: {choice.path} ({choice.reason})"]
    assert choice.reason and "\n" not in choice.reason


def test_torch_when_asked_or_on_a_cpu_device():
    assert choose_renderer("torch").path == "cpu"
    assert choose_renderer("auto", "cpu").renderer == "torch"


def test_cuda_on_request_without_cuda_is_a_one_line_error():
    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA is available here")
    with pytest.raises(VbnfError) as e:
        choose_renderer("cuda")
    assert "CUDA" in str(e.value) and "\n" not in str(e.value)


def test_each_command_logs_its_choice_once(tiny_model, tmp_path, capsys):
    from engine.cli import main
    png = str(tmp_path / "a.png")
    assert main(["render", str(tiny_model), "--size", "16x16", "--device", "cpu", "--out", png]) == 0
    assert main(["compare", str(tiny_model), "--lod", "0", "--size", "16", "--out", str(tmp_path / "b.png")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err if "render path:" in line] == ["vbnf render", "vbnf compare"]


def test_the_viewer_asks_the_same_policy(make_app, tiny_model, caplog):
    caplog.set_level(logging.INFO, logger="vbnf")
    app = make_app(tiny_model, cpu_only=True)
    assert policy_lines(caplog) == ["render path: cpu (the torch renderer was requested)"]
    assert app.state.stats.render_path == "cpu"


def test_a_failing_cuda_marcher_is_one_line_pointing_to_the_torch_renderer():
    from engine.render_policy import cuda_failure
    message = str(cuda_failure(RuntimeError("NVRTC_ERROR_COMPILATION\nlong log")))
    assert "\n" not in message and "--renderer torch" in message and "NVRTC_ERROR_COMPILATION" in message


def test_vbnf_render_with_cuda_required_and_none_here_exits_2(tiny_model, tmp_path, capsys):
    if cuda_unavailable_reason() is None:
        pytest.skip("CUDA is available here")
    from engine.cli import main
    assert main(["render", str(tiny_model), "--renderer", "cuda", "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vbnf render: error: the CUDA marcher cannot run")
    assert not (tmp_path / "a.png").exists()
