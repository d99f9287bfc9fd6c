import pytest

from mesh_cli.args import parser


def test_defaults() -> None:
    args = parser().parse_args([])
    assert (args.port, args.console, args.model, args.listen_all) == (9337, 3131, [], False)


def test_models_repeat() -> None:
    assert parser().parse_args(["--model", "a", "--model", "b"]).model == ["a", "b"]


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "x"], ["--console", "70000"],
                                  ["--max-vram", "-1"], ["--parallel", "0"]])
def test_bad_values_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err
