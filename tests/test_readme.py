"""The README's two set-up commands, and CI running the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_readme_has_exactly_two_setup_commands_starting_from_python3():
    setup = [c for c in _readme_commands() if c.startswith("python3 -m venv .venv")]
    assert len(setup) == 2, setup
    main_job, tests = setup
    assert "vsml-bench run --agent vsml --task mnist" in main_job
    assert "'.[dev]'" in tests and "pytest" in tests
    assert "ruff check" in tests and "ruff format --check" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    tests = [c for c in _readme_commands() if "pytest" in c][0]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines
