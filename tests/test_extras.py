"""A command whose optional extra is missing ends with one line naming the pip install to run."""
import sys

import pytest

from minicnn import cli


@pytest.mark.parametrize("argv, module, extra", [
    (["tune", "--trials", "1"], "optuna", "tune"),
    (["baselines", "--limit", "10"], "sklearn", "baselines"),
])
def test_missing_extra_names_its_install(tmp_path, monkeypatch, capsys, argv, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as where it is not installed
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"minicnn {argv[0]}: error: this command needs ")
    assert f'run: pip install -e ".[{extra}]"' in err
    assert not (tmp_path / "out").exists()  # nothing was created before the check
