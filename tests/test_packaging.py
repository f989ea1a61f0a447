"""The package as users install it: requirements.txt (ComfyUI-Manager's source) equals pyproject's
dependencies, every import is declared, Comfy Registry metadata, one licence, one version, a
missing extra is named, and the built wheel works away from the checkout."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import idguide

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "skimage": "scikit-image"}
# What ComfyUI itself provides to the nodes.
COMFYUI_MODULES = {"comfy", "comfy_api", "comfy_execution", "folder_paths", "latent_preview", "node_helpers"}
PACKAGE_DIRS = ["scorers", "guidance", "guidance/diffusers", "guidance/generate", "evaluation", "nodes", "cli"]


def requirement_names(requirements) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def requirements_txt() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_requirements_txt_is_the_dependency_list_of_pyproject():
    assert requirements_txt() == PROJECT["dependencies"]


def imported_distributions(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    names -= set(sys.stdlib_module_names) | COMFYUI_MODULES | {"idguide"}
    return {DISTRIBUTIONS.get(n, n).lower().replace("_", "-") for n in names}


def test_every_import_of_the_package_is_declared():
    core = requirement_names(PROJECT["dependencies"])
    extras = {name: requirement_names(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}
    optional = set().union(*(extras[e] for e in ("diffusers", "accelerate")))
    files = [REPO / "__init__.py", *(f for d in PACKAGE_DIRS for f in (REPO / d).glob("*.py"))]
    undeclared = {f"{f.relative_to(REPO)}: {d}" for f in files for d in imported_distributions(f) - core - optional}
    assert not undeclared, f"imported but not declared in requirements.txt or an extra: {sorted(undeclared)}"
    # The nodes run in a ComfyUI Python that got requirements.txt only: no extra may be imported there.
    node_imports = set().union(*(imported_distributions(f) for f in (REPO / "nodes").glob("*.py")))
    assert node_imports <= core, f"the nodes import extras: {sorted(node_imports - core)}"
    assert "tqdm" in core


def test_the_proving_grounds_imports_are_declared_in_its_own_distribution():
    proving = tomllib.loads((REPO / "proving" / "pyproject.toml").read_text())["project"]
    declared = requirement_names(proving["dependencies"]) | requirement_names(PROJECT["dependencies"]) | {"diffusers"}
    files = list((REPO / "proving" / "idguide_proving").glob("*.py"))
    undeclared = {f"{f.name}: {d}" for f in files for d in imported_distributions(f) - declared - {"idguide-proving"}}
    assert files and not undeclared, undeclared
    assert "idguide[diffusers]" in proving["dependencies"]


def test_a_missing_extra_is_named_in_the_error():
    code = ("import sys; sys.modules['diffusers'] = None; import idguide\n"
            "try:\n    idguide.IdentityGuidanceCallback\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO.parent, check=True)
    assert "idguide.IdentityGuidanceCallback needs diffusers" in out.stdout
    assert "pip install 'idguide[diffusers]'" in out.stdout


def test_one_version_in_package_pyproject_and_readme():
    readme = re.findall(r"IDGuide (\d+\.\d+\.\d+)", (REPO / "README.md").read_text())
    assert readme and set(readme) == {PROJECT["version"]} == {idguide.__version__}
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"])  # the registry wants X.Y.Z


def test_licence_file_matches_the_declared_licence():
    assert PROJECT["license"] == {"file": "LICENSE"}
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "License :: OSI Approved :: Apache Software License" in PROJECT["classifiers"]


def test_comfy_registry_metadata():
    comfy = PYPROJECT["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    # Registry node id rules: <100 chars, alphanumerics and -_. , no consecutive specials, not "ComfyUI-...".
    assert re.fullmatch(r"[A-Za-z](?:[A-Za-z0-9]|[-_.](?![-_.]))*", PROJECT["name"]) and len(PROJECT["name"]) < 100
    assert "comfyui" not in PROJECT["name"].lower()
    assert PROJECT["urls"]["Repository"].startswith("https://")
    icon = comfy["Icon"].rsplit("/main/", 1)[-1]
    assert (REPO / icon).is_file(), f"the registry icon {comfy['Icon']} is not a file of this repository"
    for folder in comfy["includes"]:
        assert (REPO / folder).exists()


def test_comfyuis_own_parser_reads_the_metadata():
    location = os.environ.get("IDGUIDE_COMFYUI")
    if not location:
        pytest.skip("IDGUIDE_COMFYUI is not set: ComfyUI's comfy_config parser is not available")
    pytest.importorskip("pydantic_settings", reason="this Python lacks ComfyUI's requirements")
    sys.path.insert(0, location)
    try:
        from comfy_config.config_parser import extract_node_configuration
    finally:
        sys.path.remove(location)
    config = extract_node_configuration(str(REPO))
    assert config.project.name == "idguide" and config.project.version == idguide.__version__
    assert config.tool_comfy.publisher_id == PYPROJECT["tool"]["comfy"]["PublisherId"]
    assert config.project.supported_comfyui_version == ">=0.3.64"
    assert config.project.dependencies == requirements_txt()


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """The wheel (python -m build), installed away from the checkout (no editable path)."""
    pytest.importorskip("build", reason="needs the build package (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so setuptools' build/ folder never lands in the checkout.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache", "benchmarks"))
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"),
                    str(source)], check=True, capture_output=True, text=True)
    (wheel,) = (root / "dist").glob("idguide-*.whl")
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    return site


def run_installed(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=site.parent, env=env)


def test_the_wheel_installs_a_working_command_and_the_example_images(wheel_site, weights_root):
    where = run_installed(wheel_site, "-c", "import idguide; print(idguide.__file__)")
    assert where.stdout.strip() == str(wheel_site / "idguide" / "__init__.py"), where.stderr
    examples = wheel_site / "idguide" / "examples"
    assert (examples / "reference.jpg").is_file() and len(list((examples / "candidates").glob("*.jpg"))) == 6
    script = wheel_site / "bin" / "idguide"
    ranked = run_installed(wheel_site, str(script), "rank", "--metric", "nearid", "--weights",
                           str(weights_root / "nearid-siglip2"), str(examples / "reference.jpg"), str(examples / "candidates"))
    assert ranked.returncode == 0, ranked.stderr
    lines = [line for line in ranked.stdout.splitlines() if ".jpg" in line]
    assert len(lines) == 6, ranked.stdout
    assert "tests" not in {p.name for p in (wheel_site / "idguide").iterdir()}


def test_the_wheel_holds_no_proving_ground(wheel_site):
    """The proving ground (its code, weights and scorers) is a separate distribution for tests and benchmarks."""
    files = [p.relative_to(wheel_site).as_posix() for p in wheel_site.rglob("*") if p.is_file()]
    assert any(f.startswith("idguide/scorers/") for f in files)
    proving = [f for f in files if "proving" in f or f.endswith(".safetensors")]
    assert not proving, proving
    (info,) = wheel_site.glob("idguide-*.dist-info")
    assert "proving" not in (info / "entry_points.txt").read_text()
    listed = run_installed(wheel_site, str(wheel_site / "bin" / "idguide"), "list")
    assert listed.returncode == 0 and "nearid" in listed.stdout, listed.stderr
    # the comfy-cli archive leaves out what .comfyignore names
    assert "proving/" in (REPO / ".comfyignore").read_text().split()
