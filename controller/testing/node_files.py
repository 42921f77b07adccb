"""Files the local node is made of that no package ships: the runc wrapper, and the Pod
sandbox image written as a docker-archive (no registry, and no podman, is needed for it).

Two things this kind of VM refuses even to root — raising an rlimit above the hard limit and
lowering ``oom_score_adj`` — make runc fail ("can't get final child's PID from pipe"), so the
CRI runtime's binary is a wrapper that drops ``process.rlimits`` and a negative
``process.oomScoreAdj`` from the bundle before exec'ing runc. Standard library only.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

PAUSE_IMAGE = "localhost/pause:3.4"

RUNC_WRAPPER = '''#!{python}
"""runc for the local node: drops what this VM refuses (see controller/testing/node.py)."""
import json, os, sys

args = sys.argv[1:]
if "create" in args and "--bundle" in args:
    config = os.path.join(args[args.index("--bundle") + 1], "config.json")
    with open(config) as fh:
        spec = json.load(fh)
    process = spec.get("process") or {{}}
    process.pop("rlimits", None)
    if (process.get("oomScoreAdj") or 0) < 0:
        process.pop("oomScoreAdj")
    with open(config, "w") as fh:
        json.dump(spec, fh)
os.execv("{runc}", ["runc", *args])
'''


def pause_archive(pause_binary: Path) -> bytes:
    """A docker-archive of the Pod sandbox image: one layer holding the static ``/pause``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(pause_binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o755
        with open(pause_binary, "rb") as fh:
            tar.addfile(info, fh)
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in (
            (f"{diff_id}/layer.tar", layer_bytes),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()
