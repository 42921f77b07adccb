"""A tiny PKI on the openssl CLI (standard library only: the control plane runs it before the
virtualenv exists): a CA and serving certificates it signs.

Used for the local control plane's API server and for the admission webhook's serving
certificate on loopback. In a cluster the Helm chart makes the webhook's certificate instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


class PkiError(RuntimeError):
    """openssl is missing or failed."""


def openssl(*args: str) -> None:
    """Run openssl; its stderr becomes the error message when it fails."""
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiError("openssl not found: install it (Debian/Ubuntu: apt-get install openssl).")
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_ca(directory: Path, common_name: str, *, key: str = "ca") -> Path:
    """``<key>.key`` and a self-signed ``<key>.crt`` (ten years) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, crt_path = directory / f"{key}.key", directory / f"{key}.crt"
    openssl("genrsa", "-out", str(key_path), "2048")
    os.chmod(key_path, 0o600)
    openssl(
        "req", "-x509", "-new", "-nodes", "-key", str(key_path), "-sha256", "-days", "3650",
        "-subj", f"/CN={common_name}", "-out", str(crt_path),
    )  # fmt: skip
    return crt_path


def make_serving_cert(
    directory: Path,
    name: str,
    common_name: str,
    subject_alt_names: Sequence[str],
    *,
    ca: str = "ca",
) -> tuple[Path, Path]:
    """``<name>.key`` and ``<name>.crt`` signed by the CA ``<ca>`` in ``directory``, valid for
    serving TLS at ``subject_alt_names`` (``IP:127.0.0.1``, ``DNS:localhost``, ...)."""
    key_path, crt_path = directory / f"{name}.key", directory / f"{name}.crt"
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    openssl("genrsa", "-out", str(key_path), "2048")
    os.chmod(key_path, 0o600)
    openssl("req", "-new", "-key", str(key_path), "-subj", f"/CN={common_name}", "-out", str(csr))
    ext.write_text(f"subjectAltName={','.join(subject_alt_names)}\nextendedKeyUsage=serverAuth\n")
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(directory / f"{ca}.crt"),
        "-CAkey", str(directory / f"{ca}.key"), "-CAcreateserial", "-days", "3650",
        "-sha256", "-extfile", str(ext), "-out", str(crt_path),
    )  # fmt: skip
    return crt_path, key_path
