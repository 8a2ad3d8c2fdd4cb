import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "nasflow.cli.main", *args], capture_output=True, text=True, env=env)


def test_help_imports_neither_torch_nor_dgl():
    code = (
        "import sys\n"
        "from nasflow.cli.main import cli, COMMANDS\n"
        "for args in [['--help']] + [[c, '--help'] for c in COMMANDS]:\n"
        "    try:\n"
        "        cli.main(args=args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'dgl', 'optuna') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_spaces_lists_sizes():
    out = run("spaces")
    assert out.returncode == 0
    assert "15,625" in out.stdout and "423,624" in out.stdout
    assert len({line.index(" cells  ") for line in out.stdout.splitlines()}) == 1  # one column, however long a count


def test_info_prints_real_optimum(nb201_csv):
    out = run("info", "--space", "nb201", "--benchmark", str(nb201_csv), "--dataset", "cifar10")
    assert out.returncode == 0, out.stderr
    assert "91.6067" in out.stdout and "94.3733" in out.stdout and "(tied)" in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["info", "--space", "nb2011"],
        ["info", "--space", "nb201", "--benchmark", "/nonexistent/file.csv"],
        ["info", "--space", "nb201", "--dataset", "mnist"],
        ["no-such-command"],
        ["info", "--no-such-option"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, nb201_csv):
    if args[-1] == "mnist":
        args = args + ["--benchmark", str(nb201_csv)]
    out = run(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("nasflow: error:") and "Traceback" not in out.stderr


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme
