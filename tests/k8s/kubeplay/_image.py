"""The run's image, built without any registry: a Debian root made by debootstrap from the
mirror apt already uses, `podman import`ed, then the project, its Python dependencies and
the compiled userspace engine copied in (`podman build` with COPY only: no RUN, no pull)."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from packaging.requirements import Requirement

from harness.plans._entrypoint import project_root
from netem._userspace._build import build_engine, cache_dir

SUITE = "bookworm"
DEBS = ("python3", "iproute2", "iptables", "libnetfilter-queue1", "iputils-ping")
"""What the pods run with: Python, ip/tc, iptables (drops, the engine's queue rules) and the
library of the userspace engine; ping to look at a pod's round trips by hand."""
SITE = "usr/local/lib/python3.11/dist-packages"  # bookworm's python3 reads it
EXTRAS = ("userspace",)
PROJECT_DIRS = ("harness", "netem", "scenarios", "tests/plans")  # tests/plans: faulty

Podman = Callable[..., subprocess.CompletedProcess[str]]


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt already uses (deb822 or one-line sources)."""
    files = sorted(sources.glob("sources.list.d/*.sources")) + sorted(
        sources.glob("sources.list*"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    raise SystemExit(f"no Debian {SUITE} mirror in {sources}/sources.list*: cannot debootstrap")


def base_tarball(cache: Path, mirror: str) -> Path:
    """Debian's root as a tarball, cached by what goes in it."""
    key = hashlib.sha256(f"{SUITE} {mirror} {' '.join(DEBS)}".encode()).hexdigest()[:12]
    tarball = cache / f"debian-{SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".rootfs-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(DEBS)}",
                        SUITE, str(root), mirror], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["tar", "-C", str(root), "-cf", f"{tarball}.part", "."], check=True)
        Path(f"{tarball}.part").replace(tarball)
    return tarball


def _needed(name: str, extras: tuple[str, ...] = ()) -> Iterator[md.Distribution]:
    """`name`'s distribution and everything it requires (with `extras`), once each."""
    seen: set[str] = set()
    todo = [(name, extras)]
    while todo:
        dist_name, dist_extras = todo.pop()
        dist = md.distribution(dist_name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        yield dist
        for text in dist.requires or ():
            req = Requirement(text)
            wanted = [{"extra": e} for e in dist_extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in wanted):
                todo.append((req.name, tuple(req.extras)))


def stage(context: Path) -> None:
    """The files of the project layer, under `context`."""
    root = project_root()
    for top in PROJECT_DIRS:
        shutil.copytree(root / top, context / "opt/harness" / top,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = context / SITE
    for dist in _needed("p2p-harness", EXTRAS):
        if dist.metadata["Name"] == "p2p-harness":
            continue
        for file in dist.files or ():
            src = Path(str(dist.locate_file(file)))
            if ".." in file.parts or "__pycache__" in file.parts or not src.is_file():
                continue
            (site / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, site / file)
    # compiled here (same Debian release and glibc), found in the pods where netem looks
    engine = build_engine(cache_dir())
    target = context / "root/.cache/netem-userspace" / engine.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(engine, target)


def tree_hash(top: Path) -> str:
    """A hash of every file's path and content under `top`."""
    h = hashlib.sha256()
    for path in sorted(p for p in top.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def build_image(podman: Podman, cache: Path) -> tuple[str, float]:
    """The image's name (built now or found in the store) and the seconds building took."""
    t0 = time.monotonic()
    base_tar = base_tarball(cache, apt_mirror())
    base = f"localhost/harness-base:{base_tar.stem.rsplit('-', 1)[-1]}"
    if podman("image", "exists", base, check=False).returncode != 0:
        podman("import", "--quiet", str(base_tar), base)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".context-") as tmp:
        context = Path(tmp)
        stage(context)
        image = f"localhost/harness:{tree_hash(context)}"
        if podman("image", "exists", image, check=False).returncode != 0:
            dirs = sorted(p.name for p in context.iterdir())
            lines = [f"FROM {base}"] + [f"COPY {d} /{d}" for d in dirs]
            (context / "Containerfile").write_text("\n".join(lines) + "\n")
            podman("build", "--quiet", "--pull=never", "--network=none", "-t", image,
                   str(context))
    # the cache keeps one project layer: earlier ones go (the Debian base stays)
    names = podman("images", "--format", "{{.Repository}}:{{.Tag}}",
                   "--filter", "reference=localhost/harness").stdout.split()
    old = [n for n in names if n != image]
    if old:
        podman("rmi", *old, check=False)
    return image, time.monotonic() - t0


if __name__ == "__main__":  # a look at what goes in: python -m tests.k8s.kubeplay._image
    print("\n".join(sorted(d.metadata["Name"] for d in _needed("p2p-harness", EXTRAS))),
          file=sys.stderr)
