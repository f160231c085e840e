"""Packaging: every subpackage is listed for the wheel, the data files ship with it, nothing shadows other packages."""
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tsformers").rglob("__init__.py")}
    assert found - listed == set(), f"add these to [tool.setuptools] packages in pyproject.toml: {found - listed}"
    assert "registry.json" in config["package-data"]["tsformers.datasets"]


def test_the_registry_ships_inside_the_package_and_the_top_level_folder_shows_it():
    import tsformers.datasets

    installed = Path(tsformers.datasets.__file__).with_name("registry.json")
    assert installed.is_file()
    assert (ROOT / "datasets" / "registry.json").resolve() == installed.resolve()


def test_import_datasets_from_the_repository_root_does_not_find_our_code():
    # `make test` runs from the root, where the top-level datasets/ folder must not shadow Hugging Face's
    # `datasets`: it holds no Python code, so it is at most an empty namespace when that package is absent.
    assert not list((ROOT / "datasets").glob("*.py"))
    probe = ("import datasets; print(getattr(datasets, '__file__', None)); "
             "print(sorted(n for n in vars(datasets) if not n.startswith('__')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:  # nothing importable under that name: nothing shadowed either
        assert "ModuleNotFoundError" in result.stderr
        return
    origin, names = result.stdout.splitlines()
    if origin == "None":  # a namespace over the folder: nothing in it
        assert names == "[]", names
    else:
        assert not Path(origin).resolve().is_relative_to(ROOT / "datasets"), origin
