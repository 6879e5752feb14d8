"The installable package: a wheel built from a clean checkout holds every file of `cgddi/`, and works outside the repo."

import hashlib, shutil, subprocess, sys, zipfile
from pathlib import Path
from cgddi.run import project_root

ROOT = project_root()


def _tracked(prefix: str) -> list[str]:
    "The files git tracks under `prefix` (a clean checkout's)."
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", prefix], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _build_wheel(tmp_path: Path) -> Path:
    "A wheel built, as pip builds one, from a copy of the tracked files only (no build/ or egg-info left in the repo)."
    src = tmp_path / "src"
    for f in _tracked("."):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
        cwd=src,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # setuptools warns of a folder it would drop in a later release (a data folder missing from `packages`)
    assert "would be ignored" not in r.stdout + r.stderr, r.stdout + r.stderr
    (wheel,) = (tmp_path / "dist").glob("cgddi-*.whl")
    return wheel


def test_the_wheel_holds_every_file_of_the_package_and_runs_outside_the_repo(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        packed = {n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if not n.startswith("cgddi-")}
    tracked = {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest() for f in _tracked("cgddi")}
    # the mini's weights, the architectures' configs, the disease tables: byte for byte as in the repo
    assert packed == tracked, {
        "missing from the wheel": sorted(tracked.keys() - packed.keys()),
        "only in the wheel": sorted(packed.keys() - tracked.keys()),
        "differ": sorted(k for k in tracked.keys() & packed.keys() if tracked[k] != packed[k]),
    }
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what `pip install` puts in site-packages
    code = (
        "import cgddi, cgddi.tiny as t, cgddi.config as c; "
        "print(cgddi.__file__); print(t.MINI_FOLDER); print(c.content_fingerprint(t.MINI_FOLDER)); "
        "from cgddi.run import declared_requirements as d; from packaging.requirements import Requirement as R; "
        "print('|'.join(sorted(str(R(r)) for r in d() if 'extra ==' not in r)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    module, mini, fingerprint, requirements = out.stdout.splitlines()
    assert Path(module).is_relative_to(site) and Path(mini).is_relative_to(site)
    # an installed mini is the same model as the repo's: the same outputs hash, so a work dir made with either is reused
    from cgddi.config import content_fingerprint
    from cgddi.tiny import MINI_FOLDER

    assert fingerprint == content_fingerprint(MINI_FOLDER)
    # without a checkout's pyproject.toml beside it, the release check reads the requirements the wheel was built with
    from packaging.requirements import Requirement
    from cgddi.run import declared_requirements

    assert requirements.split("|") == sorted(str(Requirement(r)) for r in declared_requirements())


def test_every_exported_signature_resolves_as_the_docs_read_it():
    """The docs (`show_doc`) evaluate each exported function's annotations in its module: a name imported only for type
    checkers, or in a function, fails there, after a whole CI run; here it fails in seconds."""
    import importlib, inspect

    bad = []
    for f in sorted((ROOT / "cgddi").glob("*.py")):
        if f.stem.startswith("_"):
            continue
        module = importlib.import_module(f"cgddi.{f.stem}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if callable(obj) and getattr(obj, "__module__", None) == module.__name__:
                try:
                    inspect.signature(obj, eval_str=True)
                except (NameError, TypeError, SyntaxError) as e:
                    bad.append(f"cgddi.{f.stem}.{name}: {e}")
                except ValueError:  # a builtin-backed object without a signature
                    pass
    assert not bad, bad


def test_a_later_stages_kernel_does_not_import_the_split_library():
    """Every stage's kernel and launched process imports cgddi.data, but only 00 splits: scikit-learn's model_selection
    (0.19 s of imports beside torch's) waits for `make_split`."""
    code = "import sys, cgddi.semantic, cgddi.classify; print('sklearn.model_selection' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False"]
