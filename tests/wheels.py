"""Build small real wheels from tests/fixtures/packages/<name>/ (METADATA + src/).

pip installs them like any wheel from an index; writing the zip ourselves keeps the test suite
free of build backends and network for our own fixtures.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from email.parser import Parser
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "packages"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    src: Path,
    out_dir: Path,
    *,
    metadata: str | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Zip ``src/src/**`` plus a .dist-info made from ``src/METADATA`` into ``out_dir``."""
    meta_text = metadata if metadata is not None else (src / "METADATA").read_text()
    meta = Parser().parsestr(meta_text)
    name, version = meta["Name"], meta["Version"]
    norm = name.replace("-", "_")
    dist_info = f"{norm}-{version}.dist-info"
    files: dict[str, bytes] = {}
    root = src / "src"
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    files.update(extra_files or {})
    files[f"{dist_info}/METADATA"] = meta_text.encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: envpack-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{p},{_record_hash(d)},{len(d)}" for p, d in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for arc, data in files.items():
            zf.writestr(arc, data)
    return wheel


def fixture_wheels(out_dir: Path) -> list[Path]:
    return [build_wheel(p, out_dir) for p in sorted(FIXTURES.iterdir()) if p.is_dir()]
