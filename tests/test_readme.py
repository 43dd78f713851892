"""The README's two command lines are the ones CI and newcomers run: keep them honest."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_test_command_is_what_ci_runs():
    test_lines = [b.strip() for b in _bash_blocks() if "pytest" in b]
    assert len(test_lines) == 1, "the README should show exactly one test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_lines[0] in ci.splitlines()


def test_readme_main_command_runs_the_training_example():
    main = [b.strip() for b in _bash_blocks() if "train_mnist.py" in b]
    assert len(main) == 1
    script = re.search(r"python (\S+\.py)", main[0]).group(1)
    assert (ROOT / script).is_file()
