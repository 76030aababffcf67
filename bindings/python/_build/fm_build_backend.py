"""PEP 517 build backend of the falconmamba bindings: setuptools' own (setuptools.build_meta), with a
standard-library fallback for the wheel when setuptools cannot build one by itself.

setuptools older than 70.1 builds wheels through the separate `wheel` package. Where that is missing
(an offline machine, `pip install --no-build-isolation bindings/python` with a bare setuptools), this
backend writes the wheel of this pure-Python package directly (zipfile + the metadata from
pyproject.toml). Everything else (sdist, and wheels whenever setuptools can build them) is setuptools.
"""
import base64
import hashlib
import os
import re
import zipfile

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 - the default: setuptools for every hook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "falconmamba"


def _setuptools_can_build_wheels():
    try:
        import wheel  # noqa: F401
        return True
    except ImportError:
        pass
    try:
        from setuptools.command import bdist_wheel  # noqa: F401 - setuptools >= 70.1
        return True
    except ImportError:
        return False


# ---- the fallback --------------------------------------------------------------------------------

def _project():
    """name, version, description, requires-python, readme file, optional deps of [project]."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    try:
        import tomllib  # Python >= 3.11
        return tomllib.loads(text)["project"]
    except ImportError:  # a minimal reader for the flat keys this file uses
        section = re.search(r"^\[project\]\s*$(.*?)(?=^\[)", text, re.M | re.S).group(1)
        return {k: v for k, v in re.findall(r'^([\w-]+)\s*=\s*"([^"]*)"', section, re.M)}


def _metadata():
    p = _project()
    lines = ["Metadata-Version: 2.1", "Name: %s" % p["name"], "Version: %s" % p["version"]]
    if p.get("description"):
        lines.append("Summary: %s" % p["description"])
    if p.get("requires-python"):
        lines.append("Requires-Python: %s" % p["requires-python"])
    for c in p.get("classifiers", []) if isinstance(p.get("classifiers"), list) else []:
        lines.append("Classifier: %s" % c)
    extras = p.get("optional-dependencies", {}) if isinstance(p.get("optional-dependencies"), dict) else {}
    for extra, deps in extras.items():
        lines.append("Provides-Extra: %s" % extra)
        lines += ['Requires-Dist: %s ; extra == "%s"' % (d, extra) for d in deps]
    body = ""
    readme = p.get("readme") if isinstance(p.get("readme"), str) else None
    if readme and os.path.exists(os.path.join(ROOT, readme)):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = "\n" + f.read()
    return p["name"], p["version"], "\n".join(lines) + "\n" + body


def _wheel_file(tag="py3-none-any"):
    return "Wheel-Version: 1.0\nGenerator: fm_build_backend\nRoot-Is-Purelib: true\nTag: %s\n" % tag


def _dist_info_files():
    name, version, metadata = _metadata()
    dist_info = "%s-%s.dist-info" % (name.replace("-", "_"), version)
    return name, version, dist_info, {"METADATA": metadata, "WHEEL": _wheel_file(), "top_level.txt": PACKAGE + "\n"}


def _write_wheel(wheel_directory, files):
    """files: [(archive name, bytes)] without the dist-info; returns the wheel's file name."""
    name, version, dist_info, meta = _dist_info_files()
    files = list(files) + [(dist_info + "/" + k, v.encode("utf-8")) for k, v in meta.items()]
    record = []
    for arc, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (arc, digest, len(data)))
    record.append(dist_info + "/RECORD,,")
    files.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode()))
    wheel_name = "%s-%s-py3-none-any.whl" % (name.replace("-", "_"), version)
    os.makedirs(wheel_directory, exist_ok=True)
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            z.writestr(zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return wheel_name


def _package_files():
    out = []
    pkg = os.path.join(ROOT, PACKAGE)
    for fn in sorted(os.listdir(pkg)):
        if fn.endswith(".py") or fn.startswith("libfalconmamba.so"):
            with open(os.path.join(pkg, fn), "rb") as f:
                out.append((PACKAGE + "/" + fn, f.read()))
    return out


def _prepare_metadata(metadata_directory):
    _, _, dist_info, meta = _dist_info_files()
    d = os.path.join(metadata_directory, dist_info)
    os.makedirs(d, exist_ok=True)
    for k, v in meta.items():
        with open(os.path.join(d, k), "w", encoding="utf-8") as f:
            f.write(v)
    return dist_info


if not _setuptools_can_build_wheels():

    def get_requires_for_build_wheel(config_settings=None):  # noqa: F811
        return []

    def get_requires_for_build_editable(config_settings=None):  # noqa: F811
        return []

    def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):  # noqa: F811
        return _prepare_metadata(metadata_directory)

    def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):  # noqa: F811
        return _prepare_metadata(metadata_directory)

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: F811
        return _write_wheel(wheel_directory, _package_files())

    def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: F811
        # PEP 660: a .pth file that puts the source directory on sys.path.
        return _write_wheel(wheel_directory, [("__editable__.%s.pth" % PACKAGE, (ROOT + "\n").encode())])
