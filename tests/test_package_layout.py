"""The house rules of the package layout: packages import one way, scripts run from the installed package, and
every script reports our errors the same way."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from utils.errors import MaskbitError, run_main

ROOT = Path(__file__).resolve().parents[1]
# package -> top-level packages of ours it must never import (modeling: torch and its own helpers only)
FORBIDDEN = {"modeling": {"training", "data", "evaluation"}, "data": {"training"}, "utils": {"training", "data",
                                                                                             "evaluation", "modeling"}}
OURS = {"modeling", "training", "data", "evaluation", "utils"}


def imported_packages(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_point_one_way(package):
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[package])
                 for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_scripts_rely_on_the_installed_package_and_one_entry_wrapper():
    for script in sorted((ROOT / "scripts").glob("*.py")):
        text = script.read_text()
        assert "sys.path.insert" not in text, script.name
        assert f'run_main(main, prog="{script.name}")' in text, script.name


def test_run_main_turns_our_errors_into_one_line_and_exit_code_2(capsys):
    def broken():
        raise MaskbitError("set experiment.vqgan_checkpoint=PATH")

    with pytest.raises(SystemExit) as exit_info:
        run_main(broken, prog="some_script.py")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "some_script.py: error: set experiment.vqgan_checkpoint=PATH\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_main(lambda: 1 / 0)


def test_a_script_reports_a_missing_checkpoint_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_tokenizer.py"),
                             f"config={ROOT / 'configs/quickstart/tokenizer_tiny.yaml'}",
                             f"experiment.vqgan_checkpoint={tmp_path / 'missing.bin'}",
                             "evaluation.compute_inception=false", "evaluation.compute_lpips=false"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "eval_tokenizer.py: error: Checkpoint" in result.stderr and "missing.bin" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_unused_runtime_dependency():
    requirements = (ROOT / "requirements.txt").read_text()
    assert "einops" not in requirements  # nothing imports it
