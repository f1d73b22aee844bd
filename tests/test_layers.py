"""The layering of the house, checked from the imports (every import statement, at any depth).

    contract  <-  backends  <-  services  <-  UI / CLI / API
                  storage   <-  services

- `pipelines.contract` imports nothing else of the project.
- A backend package (`pipelines.embedded`, `pipelines.diffusers`) imports only the contract and itself;
  training code never imports the serving backend.
- `storage` imports only itself and knows nothing of torch, Gradio or video codecs.
- Media (`studio.media`) and the services import the contract, storage and each other, never a
  backend directly (they get one through the registry) and never the UI or the CLI.
- The UI imports the facade, the contract and settings: no torch, no SQLAlchemy, no storage.
- The composition roots (`app`, `studio.wiring`) may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("pipelines", "studio", "storage", "app")

SERVICES = ["pipelines.contract", "storage", "studio.media", "studio.jobs", "studio.gallery", "studio.settings",
            "studio.facade", "studio.clips", "studio.accounts", "studio.space", "studio.reviews",
            "studio.loras", "studio.executors"]
# (module prefix, project modules it may import, third-party modules it must not import); first match wins
RULES: list[tuple[str, list[str], list[str]]] = [
    ("pipelines.contract", ["pipelines.contract"], ["gradio", "sqlalchemy", "storage"]),
    ("pipelines.embedded", ["pipelines.contract", "pipelines.embedded"], ["gradio", "sqlalchemy"]),
    ("pipelines.diffusers", ["pipelines.contract", "pipelines.diffusers"], ["gradio", "sqlalchemy"]),
    # RIFE's network (frame interpolation): model code like a backend's, but no backend; the composition root
    # hands its builder to studio.media, which stays torch-free
    ("pipelines.rife", ["pipelines.rife"], ["gradio", "sqlalchemy"]),
    ("pipelines", ["pipelines.contract"], ["gradio", "sqlalchemy"]),  # the package itself, data files' loaders
    ("storage", ["storage"], ["torch", "gradio", "imageio", "imageio_ffmpeg", "av", "moviepy", "diffusers",
                              "subprocess"]),
    ("studio.media", ["pipelines.contract", "storage", "studio.media", "studio.settings"], ["gradio", "torch"]),
    ("studio.ui", ["pipelines.contract", "studio.facade", "studio.clips", "studio.settings", "studio.ui"],
     ["torch", "sqlalchemy", "diffusers"]),
    ("studio.cli", ["pipelines.contract", "studio.facade", "studio.clips", "studio.settings", "studio.wiring",
                    "studio.ui", "studio.cli", "pipelines.embedded.train", "pipelines.embedded.evaluate"],
     ["sqlalchemy", "diffusers"]),
    ("studio.wiring", list(PROJECT), []),
    ("app", list(PROJECT), []),
    ("studio", SERVICES, ["gradio", "diffusers"]),
]
TRAINING = ("pipelines.embedded.train", "pipelines.embedded.training")
SERVING = ("pipelines.embedded.backend",)


def _modules() -> dict[str, Path]:
    out = {}
    for top in PROJECT:
        paths = [ROOT / "app.py"] if top == "app" else sorted((ROOT / top).rglob("*.py"))
        for path in paths:
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if "migrations" in parts:
                continue
            out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of everything `path` imports (relative imports resolved against `module`)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            # `from pipelines.embedded import backend` imports the submodule backend
            names.update(f"{prefix}.{a.name}" for a in node.names if a.name != "*")
    return names


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _rule(module: str):
    for prefix, allowed, forbidden in RULES:
        if _within(module, [prefix]):
            return allowed, forbidden
    return None


def _violations() -> list[str]:
    modules = _modules()
    bad = []
    for module, path in modules.items():
        rule = _rule(module)
        if rule is None:
            bad.append(f"{module}: no layer rule covers it")
            continue
        allowed, forbidden = rule
        for name in sorted(_imports(path, module)):
            top = name.split(".")[0]
            if top in PROJECT and name in modules | {p: None for p in PROJECT}:
                if not _within(name, allowed):
                    bad.append(f"{module} imports {name}")
                if _within(module, TRAINING) and _within(name, SERVING):
                    bad.append(f"{module} (training) imports the serving backend {name}")
            elif top in PROJECT:
                continue  # `from pkg import name` where name is not a module: its package was checked
            elif _within(name, forbidden):
                bad.append(f"{module} imports {name}")
    return bad


def test_layers_hold():
    bad = _violations()
    assert not bad, "layering broken:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, module, expected", [
    ("from pipelines.embedded import backend\n", "pipelines.embedded.train", "pipelines.embedded.backend"),
    ("from . import backend\n", "pipelines.embedded.train", "pipelines.embedded.backend"),
    ("def f():\n    import torch\n", "storage.files", "torch"),
])
def test_import_scanner_sees_nested_and_relative_imports(tmp_path, source, module, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert expected in _imports(path, module)


def test_rules_catch_a_violation(tmp_path, monkeypatch):
    """A storage module that imports the job service must be reported."""
    fake = tmp_path / "storage_bad.py"
    fake.write_text("from studio.jobs import JobService\n")
    real = _modules

    def with_fake():
        return {**real(), "storage.bad": fake}

    monkeypatch.setitem(globals(), "_modules", with_fake)
    assert "storage.bad imports studio.jobs" in _violations()
