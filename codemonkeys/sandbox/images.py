"""Container images without a registry: the offline base image, and per-problem repo images built once.

Base image: `sandboxes/base/make-rootfs.sh` (debootstrap from the mirror this machine's apt uses) →
`tar | docker import` with the config below, labelled with a hash of that recipe: an image built from an
older recipe is rebuilt (where this process can build it) instead of used. Repo image: base + the
repository at its commit as a fresh git repo whose single commit is the pristine state + the optional
setup command, committed once and reused by every trajectory and every later run (the tag is derived
from repo, commit, setup and base).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from codemonkeys.sandbox import engine

BASE_IMAGE = "codemonkeys/base:py3.11"
REPO_WORKDIR = "/repo"
WORKDIR_LABEL = "codemonkeys.workdir"
BASE_USER = "cm"
BASE_CHANGES = [
    "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV VIRTUAL_ENV=/opt/venv",
    "ENV LANG=C.UTF-8",
    f"WORKDIR {REPO_WORKDIR}",
    f"USER {BASE_USER}",
    'CMD ["/bin/bash"]',
    f"LABEL {engine.LABEL}=1 {engine.KIND_LABEL}=base {WORKDIR_LABEL}={REPO_WORKDIR}",
]
RECIPE_LABEL = "codemonkeys.recipe"
REPO_RECIPE = "2: the tree after setup is committed"  # change it when the repo image's build steps change
GIT_IDENTITY = ["-c", "user.name=codemonkeys", "-c", "user.email=codemonkeys@localhost", "-c", "commit.gpgsign=false"]

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be found, pulled or built: the message says why and what to do."""


def _quiet(_line: str) -> None:
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codemonkeys"


def recipes_dir() -> Path:
    """`sandboxes/` of a source checkout, or its copy inside an installed wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "sandboxes", package / "_sandboxes"):
        if candidate.is_dir():
            return candidate
    raise ImageError("the image recipes (sandboxes/) are missing from this installation")


def _main_suite(suite: str) -> bool:
    return not re.search(r"[/-](security|updates|backports|proposed)$", suite) and "/" not in suite


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The first main-suite `deb` mirror of this machine's apt sources (deb822 files, then sources.list)."""
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.strip().startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            if any(_main_suite(s) for s in fields.get("suites", "").split()) and fields.get("uris"):
                return fields["uris"].split()[0]
    lists = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and _main_suite(words[2]):
                return words[1]
    raise ImageError(f"no Debian mirror found in {etc}/sources.list.d/*.sources or {etc}/sources.list")


def base_recipe() -> str:
    """A hash of what the base image is built from (the rootfs script and the import config): a changed
    recipe is a new image, so a machine that has the old one rebuilds it."""
    digest = hashlib.sha256((recipes_dir() / "base" / "make-rootfs.sh").read_bytes())
    digest.update("\0".join(BASE_CHANGES).encode())
    return digest.hexdigest()[:16]


def base_is_current(client: docker.DockerClient, name: str = BASE_IMAGE) -> bool:
    """Present and built from this recipe."""
    try:
        labels = client.images.get(name).labels or {}
    except docker.errors.ImageNotFound:
        return False
    return labels.get(RECIPE_LABEL) == base_recipe()


def can_build_base() -> bool:
    return os.geteuid() == 0 and shutil.which("debootstrap") is not None


def image_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """One build per image at a time, across threads and processes: the others wait, then reuse it."""
    with _thread_lock(name):
        locks = cache_dir() / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / (re.sub(r"[^\w.-]", "_", name) + ".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(name: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(name, threading.Lock())


def _run_streaming(argv: list[str], progress: Progress) -> tuple[int, list[str]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        progress(line.rstrip())
    return proc.wait(), lines


def build_base_image(
    client: docker.DockerClient,
    name: str = BASE_IMAGE,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    progress: Progress = _quiet,
) -> str:
    """debootstrap + docker import, no registry; about a minute. Needs root and debootstrap."""
    if os.geteuid() != 0:
        raise ImageError("building the base image needs root (debootstrap); run `codemonkeys sandbox build` as root")
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (as root: apt-get install -y debootstrap)")
    mirror = mirror or apt_mirror()
    repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
    with tempfile.TemporaryDirectory(prefix="codemonkeys-rootfs-") as tmp:
        root = Path(tmp) / "root"
        progress(f"debootstrap {suite} from {mirror} into {root}")
        script = recipes_dir() / "base" / "make-rootfs.sh"
        code, lines = _run_streaming(
            ["sh", str(script), str(root), suite, mirror, str(cache_dir() / "debootstrap" / suite)], progress
        )
        if code != 0:
            raise ImageError(f"building the base rootfs failed (exit {code}): {' '.join(lines[-3:])}")
        progress(f"importing the rootfs as {name}")
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "--exclude=./proc/*", "--exclude=./sys/*", "-c", "."],
            stdout=subprocess.PIPE,
        )
        assert tar.stdout is not None
        chunks = iter(lambda: tar.stdout.read(1 << 20), b"")  # type: ignore[union-attr]
        try:
            changes = [*BASE_CHANGES, f"LABEL {RECIPE_LABEL}={base_recipe()}"]
            client.api.import_image(src=chunks, repository=repository, tag=tag, changes=changes, stream_src=True)
        except docker.errors.APIError as exc:
            raise ImageError(f"docker import failed: {engine.describe_exc(exc)}") from None
        finally:
            tar.stdout.close()
            tar.wait()
    if not image_exists(client, name):
        raise ImageError(f"docker import did not produce {name}")
    progress(f"built {name}")
    return name


def ensure_image(client: docker.DockerClient, name: str, progress: Progress = _quiet) -> None:
    """Present already, or built (our base image), or pulled where a registry answers.

    Our base image is rebuilt when it was built from an older recipe; where it cannot be (not root, no
    debootstrap) the old one is used, with a note saying how to rebuild it."""
    if name == BASE_IMAGE:
        if base_is_current(client, name):
            return
        if image_exists(client, name) and not can_build_base():
            progress(
                f"{name} was built from an older recipe: rebuild it as root with `codemonkeys sandbox build --force`"
            )
            return
        with build_lock(name):
            if not base_is_current(client, name):
                progress(f"building {name}: missing or built from an older recipe")
                build_base_image(client, name, progress=progress)
        return
    if image_exists(client, name):
        return
    progress(f"pulling {name}")
    try:
        client.images.pull(name)
    except docker.errors.DockerException as exc:
        raise ImageError(
            f"image {name} is not present and could not be pulled (is a registry reachable?): {engine.describe_exc(exc)}"
        ) from None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "repo"


def repo_image_tag(client: docker.DockerClient, repo_path: Path, commit: str, setup: str | None, base: str) -> str:
    """Same repo, commit, setup, base image (by id, so a rebuilt base counts as new) and recipe → same tag."""
    base_id = client.images.get(base).id
    digest = hashlib.sha256(f"{REPO_RECIPE}\0{base_id}\0{setup or ''}".encode()).hexdigest()[:10]
    return f"codemonkeys/repo-{_slug(repo_path.name)}:{commit[:12]}-{digest}"


def derived_image_tag(client: docker.DockerClient, image: str, setup: str) -> str:
    base_id = client.images.get(image).id
    digest = hashlib.sha256(f"{base_id}\0{setup}".encode()).hexdigest()[:10]
    return f"codemonkeys/setup-{_slug(image.rsplit('/', 1)[-1].replace(':', '-'))}:{digest}"


def _tree_tar(repo_path: Path, commit: str) -> bytes:
    """The commit's files exactly as a checkout makes them (unlike `git archive`, export-ignore does not apply),
    as a tar whose top directory is REPO_WORKDIR; the repo's own index and worktree are not touched."""
    with tempfile.TemporaryDirectory(prefix="codemonkeys-tree-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        tree = Path(tmp) / "tree"
        for args in (["read-tree", commit], ["checkout-index", "-a", "-f", f"--prefix={tree}/"]):
            proc = subprocess.run(["git", *args], cwd=repo_path, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ImageError(f"git {args[0]} in {repo_path} failed: {proc.stderr.strip()}")
        tree.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(tree, arcname=REPO_WORKDIR.lstrip("/"))
        return buffer.getvalue()


def _exec(container: Container, cmd: str, user: str, workdir: str, progress: Progress) -> None:
    api = container.client.api
    exec_id = api.exec_create(container.id, ["sh", "-c", cmd], user=user, workdir=workdir)["Id"]
    lines: list[str] = []
    pending = b""
    for chunk in api.exec_start(exec_id, stream=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            progress(line)
    code = api.exec_inspect(exec_id)["ExitCode"]
    if code != 0:
        tail = "\n".join(lines[-15:])
        raise ImageError(f"`{cmd}` failed in the image build (exit {code}):\n{tail}")


def _commit_image(
    client: docker.DockerClient,
    base: str,
    tag: str,
    workdir: str,
    steps: list[tuple[str, str]],
    labels: dict[str, str],
    tree: bytes | None,
    progress: Progress,
) -> None:
    """Runs `steps` (command, user) in a container of `base` (network on: setup installs dependencies) and
    commits it as `tag`. The container ends itself if this process dies (its main process waits on stdin)."""
    user = client.images.get(base).attrs["Config"].get("User") or "root"
    build_labels = engine.owner_labels("image-build", "build")
    container = client.containers.create(
        base,
        entrypoint=["/bin/sh", "-c", "exec cat >/dev/null"],
        command=[],
        stdin_open=True,
        user="root",
        working_dir="/",
        labels=build_labels,
        auto_remove=True,
    )
    engine.registry.add(client, container.id)
    sock = client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
    try:
        container.start()
        if tree is not None:
            container.put_archive("/", tree)
            _exec(container, f"chown -R {user} {REPO_WORKDIR}", "root", "/", progress)
        for cmd, step_user in steps:
            progress(f"$ {cmd}")
            _exec(container, cmd, step_user or user, workdir, progress)
        repository, _, version = tag.rpartition(":")
        container.commit(
            repository=repository,
            tag=version,
            # The build container's owner labels would otherwise be merged into the image's.
            conf={"Labels": {**dict.fromkeys(build_labels, ""), **labels}, "WorkingDir": workdir, "User": user},
            changes=['CMD ["/bin/bash"]'],
        )
    finally:
        sock.close()
        engine.remove_container(client, container.id)
        engine.registry.discard(container.id)


def build_repo_image(
    client: docker.DockerClient,
    repo_path: Path,
    commit: str,
    *,
    setup: str | None = None,
    base: str = BASE_IMAGE,
    progress: Progress = _quiet,
) -> str:
    """The repo image for (repo, commit, setup, base), built at most once; returns its tag."""
    ensure_image(client, base, progress)
    tag = repo_image_tag(client, repo_path, commit, setup, base)
    with build_lock(tag):
        if image_exists(client, tag):
            return tag
        progress(f"building {tag} from {base}")
        git = " ".join(["git", *GIT_IDENTITY])
        steps = [
            (f"git init -q && {git} add -A -f && {git} commit -q --no-verify --allow-empty -m 'pristine {commit}'", ""),
            ("git config user.name codemonkeys && git config user.email codemonkeys@localhost", ""),
        ]
        if setup:
            # What setup built (ignored files too) is committed: a reset restores it, a diff leaves it out.
            after = f"{git} add -A -f && {git} commit -q --no-verify --allow-empty -m 'after setup'"
            steps += [(setup, ""), (after, "")]
        labels = {
            engine.LABEL: "1",
            engine.KIND_LABEL: "repo",
            WORKDIR_LABEL: REPO_WORKDIR,
            "codemonkeys.repo": repo_path.name,
            "codemonkeys.commit": commit,
        }
        _commit_image(client, base, tag, REPO_WORKDIR, steps, labels, _tree_tar(repo_path, commit), progress)
        progress(f"built {tag}")
    return tag


def build_setup_image(
    client: docker.DockerClient, image: str, setup: str, workdir: str, progress: Progress = _quiet
) -> str:
    """A ready image (e.g. a SWE-bench instance image, repo already at `workdir`) + a setup command, once."""
    ensure_image(client, image, progress)
    tag = derived_image_tag(client, image, setup)
    with build_lock(tag):
        if not image_exists(client, tag):
            progress(f"building {tag}: {image} + setup")
            labels = {engine.LABEL: "1", engine.KIND_LABEL: "setup", WORKDIR_LABEL: workdir}
            _commit_image(client, image, tag, workdir, [(setup, "")], labels, None, progress)
            progress(f"built {tag}")
    return tag
