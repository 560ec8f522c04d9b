"""The import contracts in pyproject.toml ([tool.importlinter]), checked with import-linter: the
analysis imports nothing of the service, business code never wires the OpenTelemetry SDK, and
the layers from the commands down to the neutral helpers hold (function-local imports count)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from quantscope.settings import PROJECT_ROOT as ROOT

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    r = _lint()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in r.stdout


def test_a_broken_contract_is_reported(tmp_path):
    """The checker sees function-local imports: `validate` imports its workflow inside the command
    (for a light --help), and a contract forbidding that must break."""
    cfg = tmp_path / "contracts.toml"
    cfg.write_text('[tool.importlinter]\nroot_package = "quantscope"\n\n'
                   '[[tool.importlinter.contracts]]\nname = "the command never imports its workflow"\ntype = "forbidden"\n'
                   'source_modules = ["quantscope.cli.validate"]\nforbidden_modules = ["quantscope.workflows.validate"]\n')
    r = _lint("--config", str(cfg))
    assert r.returncode == 1 and "BROKEN" in r.stdout and "quantscope.cli.validate -> quantscope.workflows.validate" in r.stdout


def test_the_documented_layers_are_the_enforced_ones():
    """docs/architecture.md lists the layers; the contract in pyproject.toml enforces them."""
    import re
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers:[^>]*-->\s*```\n(.*?)```", doc, re.S)
    assert block, "docs/architecture.md has no layers block"
    assert block.group(1).splitlines() == layers
