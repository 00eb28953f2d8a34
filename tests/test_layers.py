"""The package's layers point one way: contract <- model <- export <- train/eval, and runtime_bench on the contract
only (STYLE.md, "Direction of dependencies"). Read from the source (every import, also inside functions), so a lazy
import cannot hide a wrong arrow; no module imports another layer's private names.

    emo.contract          the artifact contract (torch-free)
    emo (model layer)     emo.model, emo.deploy_attention, emo.checkpoint, emo.data, emo.errors, emo.cli_common, ...
    emo.export            converters, parity, the export pipeline, emo-export/verify/predict
    emo.train/evaluate    emo-train, emo-eval
    emo.runtime_bench     emo-bench (runs where only a runtime is installed)
    emo.web_demo          the web demo's command line (serves the page with runtime_bench's server)
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"emo": REPO / "emo", "emo.export": REPO / "export", "emo.runtime_bench": REPO / "runtime_bench"}
ALLOWED = {
    "contract": {"contract"},
    "model": {"contract", "model"},
    "export": {"contract", "model", "export"},
    "train": {"contract", "model", "export", "train"},
    "bench": {"contract", "bench"},
    "app": {"contract", "bench"},
}


def layer(module: str) -> str:
    if module == "emo.contract" or module.startswith("emo.contract."):
        return "contract"
    if module.startswith("emo.export"):
        return "export"
    if module.startswith("emo.runtime_bench"):
        return "bench"
    if module in ("emo.train", "emo.evaluate"):
        return "train"
    if module == "emo.web_demo":
        return "app"
    return "model"


def modules():
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            if package == "emo" and path.relative_to(root).parts[0] in ("assets",):
                continue
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([package, *parts]), path


def imports(path: Path, module: str):
    """(imported module, imported names) of every import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base, [a.name for a in node.names]


def test_layers_point_one_way():
    wrong = []
    for module, path in modules():
        mine = layer(module)
        for target, names in imports(path, module):
            if target != "emo" and not target.startswith("emo."):
                continue
            targets = [f"{target}.{n}" for n in names] if target == "emo" and names else [target]
            for full in targets:
                theirs = layer(full) if full != "emo" else "model"
                if theirs not in ALLOWED[mine]:
                    wrong.append(f"{module} ({mine}) imports {full} ({theirs})")
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private and theirs != mine:
                    wrong.append(f"{module} imports private {private} of {full}")
    assert not wrong, "\n".join(wrong)


def test_contract_and_bench_import_neither_torch_nor_the_model():
    code = ("import sys, emo.contract.sidecar, emo.contract.examples, emo.contract.pt2, emo.contract.schema, "
            "emo.runtime_bench.cli; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('emo.model', 'emo.export'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
