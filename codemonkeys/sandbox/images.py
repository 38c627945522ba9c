"""Container images: the base image (from a registry image, or offline), and per-problem repo images built once.

Base image, two routes to the same contents and config: `registry` builds `sandboxes/base/Dockerfile` on
python:3.11-slim (present locally, or pulled where a registry answers; the only route on macOS and Windows),
`debootstrap` runs `sandboxes/base/make-rootfs.sh` (debootstrap from the mirror this machine's apt uses) →
`tar | docker import`, no registry at all. Both apply BASE_CHANGES and label the image with its route and a
hash of that route's recipe: an image built from an older recipe is rebuilt (where this process can build
it) instead of used. Repo image: base + the repository at its commit as a fresh git repo whose single
commit is the pristine state + the optional setup command, committed once and reused by every trajectory
and every later run (the tag is derived from repo, commit, setup and base).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
ROUTE_LABEL = "codemonkeys.base.route"  # registry | debootstrap; absent on images from before the registry route
SOURCE_LABEL = "codemonkeys.base.source"  # what it was built from: the registry image, or the Debian suite
BASE_FROM = "python:3.11-slim"
BASE_FROM_ENV = "CODEMONKEYS_BASE_FROM"  # another registry image (a mirror's copy, a local stand-in)
REGISTRY_TIMEOUT = 20.0  # seconds for a registry to start answering a pull before it counts as unreachable
REPO_RECIPE = "2: the tree after setup is committed"  # change it when the repo image's build steps change
GIT_IDENTITY = ["-c", "user.name=codemonkeys", "-c", "user.email=codemonkeys@localhost", "-c", "commit.gpgsign=false"]

Progress = Callable[[str], None]
Route = Literal["registry", "debootstrap"]
Requested = Literal["auto", "registry", "debootstrap"]


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


def base_from_image() -> str:
    return os.environ.get(BASE_FROM_ENV) or BASE_FROM


def base_recipe(route: str = "debootstrap") -> str:
    """A hash of what the base image is built from by `route` (its script or Dockerfile, and the config): a
    changed recipe is a new image, so a machine that has the old one rebuilds it."""
    script = "make-rootfs.sh" if route == "debootstrap" else "Dockerfile"
    digest = hashlib.sha256((recipes_dir() / "base" / script).read_bytes())
    digest.update("\0".join(BASE_CHANGES).encode())
    return digest.hexdigest()[:16]


def base_route(client: docker.DockerClient, name: str = BASE_IMAGE) -> Route | None:
    """How the image was built (images from before the registry route carry no route label: debootstrap)."""
    try:
        labels = client.images.get(name).labels or {}
    except docker.errors.ImageNotFound:
        return None
    return "registry" if labels.get(ROUTE_LABEL) == "registry" else "debootstrap"


def base_is_current(client: docker.DockerClient, name: str = BASE_IMAGE) -> bool:
    """Present and built from the current recipe of the route that built it."""
    try:
        labels = client.images.get(name).labels or {}
    except docker.errors.ImageNotFound:
        return False
    route = labels.get(ROUTE_LABEL, "debootstrap")
    return route in ("registry", "debootstrap") and labels.get(RECIPE_LABEL) == base_recipe(route)


def debootstrap_path() -> str | None:
    """debootstrap lives in /usr/sbin, which a non-root PATH often lacks."""
    return shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")


def can_build_base(client: docker.DockerClient | None = None) -> bool:
    """Without asking a registry: root with debootstrap on Linux, or the registry image already present."""
    if sys.platform.startswith("linux") and os.geteuid() == 0 and debootstrap_path() is not None:
        return True
    return client is not None and image_exists(client, base_from_image())


@dataclass(frozen=True)
class BasePlan:
    route: Route
    why: str
    install_debootstrap: bool = False


_PLATFORMS = {"darwin": "macOS", "win32": "Windows", "cygwin": "Windows"}


def plan_base_build(
    requested: Requested,
    *,
    image_present: bool,
    registry_answers: bool,
    platform: str,
    debootstrap_present: bool,
    root: bool,
    apt_get_present: bool,
    from_image: str = BASE_FROM,
) -> BasePlan:
    """Which route builds the base image here, or an ImageError saying exactly what to do.

    auto: the registry image present or a registry answering → registry; else debootstrap, which needs
    Linux, root and debootstrap (installed first when root and apt-get is here). `registry_answers` is only
    read when the image is not present and the route may be the registry one."""
    if requested != "debootstrap":
        if image_present:
            return BasePlan("registry", f"{from_image} is present")
        if registry_answers:
            return BasePlan("registry", f"{from_image} was pulled")
    host = _PLATFORMS.get(platform, platform)
    reach = f"let Docker Desktop reach Docker Hub so the {from_image} route works"
    if requested == "registry" or not platform.startswith("linux"):
        if not platform.startswith("linux"):
            raise ImageError(
                f"{from_image} is not present and no registry answers, and debootstrap cannot run here ({host}): "
                f"{reach} (or `docker pull {from_image}` / `docker load` a saved copy), then run "
                "`codemonkeys sandbox build` again"
            )
        raise ImageError(
            f"{from_image} is not present and no registry answers: `docker pull {from_image}` where one does (or "
            "`docker load` a saved copy), or build offline with `codemonkeys sandbox build --from debootstrap` as root"
        )
    offline = "" if requested == "debootstrap" else f"{from_image} is not present and no registry answers, so "
    if not root:
        install = "run `sudo apt-get install debootstrap`" if apt_get_present else "install debootstrap"
        missing = "" if debootstrap_present else f"{install}, then "
        raise ImageError(
            f"{offline}the base image is built offline with debootstrap, which needs root: "
            f"{missing}run `sudo codemonkeys sandbox build --from debootstrap`"
        )
    why = f"{offline}debootstrap (offline)" if offline else "debootstrap requested"
    if debootstrap_present:
        return BasePlan("debootstrap", why)
    if not apt_get_present:
        raise ImageError(
            f"{offline}the base image is built offline with debootstrap, which is not installed and apt-get is not "
            "here to install it: install debootstrap with this system's package manager"
        )
    return BasePlan("debootstrap", why, install_debootstrap=True)


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


def _run_streaming(argv: list[str], progress: Progress, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Runs `argv`, each output line to `progress`. If this is interrupted, the whole process group is ended (a
    debootstrap left running would keep writing into a directory about to be removed)."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            progress(line.rstrip())
    except BaseException:
        _end_group(proc)
        raise
    finally:
        proc.stdout.close()
    return proc.wait(), lines


def _end_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the group (debootstrap unmounts what it mounted), SIGKILL if it is still there 10 s later."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _unmount_under(root: Path) -> None:
    """debootstrap mounts /proc, /sys and device nodes inside the rootfs and unmounts them when it ends, but
    not when it is killed: removing the directory must not reach into them."""
    prefix = str(root.resolve()) + "/"
    try:
        table = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[1].replace("\\040", " ") for line in table if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _repo_tag(name: str) -> tuple[str, str]:
    repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
    return repository, tag


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def install_debootstrap(progress: Progress = _quiet) -> str:
    """`apt-get install -y debootstrap` as root (after `apt-get update` when the package lists are stale)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "debootstrap"]
    progress(f"debootstrap is missing: {' '.join(install)}")
    code, lines = _run_streaming(install, progress, env)
    if code != 0:
        progress("apt-get update -q, then again")
        code, lines = _run_streaming(["apt-get", "update", "-q"], progress, env)
        if code == 0:
            code, lines = _run_streaming(install, progress, env)
    path = debootstrap_path()
    if code != 0 or path is None:
        tail = "\n".join(lines[-5:])
        raise ImageError(
            f"installing debootstrap failed (exit {code}); run `apt-get install -y debootstrap` yourself, then "
            f"`codemonkeys sandbox build` again:\n{tail}"
        )
    return path


def _answered_within(start: Callable[[], Iterable[dict[str, Any]]], seconds: float) -> Iterator[dict[str, Any]]:
    """The events of a streaming engine call, read in a thread: a registry that never answers costs `seconds`,
    not the engine's own timeout (the abandoned thread ends with the engine's)."""
    events: queue.Queue[dict[str, Any] | Exception | None] = queue.Queue()  # None: the end

    def read() -> None:
        try:
            for event in start():
                events.put(event)
        except Exception as exc:  # handed to the consumer below
            events.put(exc)
        events.put(None)

    threading.Thread(target=read, name="registry-pull", daemon=True).start()
    try:
        item = events.get(timeout=seconds)
    except queue.Empty:
        raise ImageError(f"no answer within {seconds:g} s") from None
    while item is not None:
        if isinstance(item, Exception):
            raise item
        yield item
        item = events.get()


_PULL_CHATTER = {"Downloading", "Extracting", "Waiting", "Verifying Checksum"}


def pull_registry_image(client: docker.DockerClient, image: str, progress: Progress = _quiet) -> bool:
    """`docker pull image`, given up when no registry starts answering within REGISTRY_TIMEOUT; True if pulled."""
    repository, tag = _repo_tag(image)
    progress(f"pulling {image}")
    try:
        for event in _answered_within(
            lambda: client.api.pull(repository, tag=tag, stream=True, decode=True), REGISTRY_TIMEOUT
        ):
            if "error" in event:
                raise ImageError(str(event["error"]))
            status = str(event.get("status", ""))
            if status and status not in _PULL_CHATTER:
                progress(f"{event['id']}: {status}" if event.get("id") and event["id"] != tag else status)
    except (ImageError, docker.errors.DockerException, OSError) as exc:  # OSError: requests' own errors
        progress(f"no registry answers for {image}: {engine.describe_exc(exc)}")
        return False
    return image_exists(client, image)


def build_base_image(
    client: docker.DockerClient,
    name: str = BASE_IMAGE,
    *,
    route: Requested = "auto",
    from_image: str | None = None,
    suite: str = "bookworm",
    mirror: str | None = None,
    progress: Progress = _quiet,
) -> str:
    """The base image by the route plan_base_build picks here (auto: the registry image when it is present or
    can be pulled, else debootstrap, installed first when missing and we are root)."""
    from_image = from_image or base_from_image()
    present = route != "debootstrap" and image_exists(client, from_image)
    pulled = route != "debootstrap" and not present and pull_registry_image(client, from_image, progress)
    plan = plan_base_build(
        route,
        image_present=present,
        registry_answers=pulled,
        platform=sys.platform,
        debootstrap_present=debootstrap_path() is not None,
        root=_is_root(),
        apt_get_present=shutil.which("apt-get") is not None,
        from_image=from_image,
    )
    progress(f"route: {plan.route} ({plan.why})")
    if plan.route == "registry":
        return _build_from_registry(client, name, from_image, progress)
    if plan.install_debootstrap:
        install_debootstrap(progress)
    return _build_with_debootstrap(client, name, suite, mirror or apt_mirror(), progress)


def _build_from_registry(client: docker.DockerClient, name: str, from_image: str, progress: Progress) -> str:
    """sandboxes/base/Dockerfile + BASE_CHANGES on `from_image` (the classic builder, through the SDK). A failed
    build leaves neither its containers (forcerm) nor the intermediate images it made."""
    dockerfile = (recipes_dir() / "base" / "Dockerfile").read_text() + "\n" + "\n".join(BASE_CHANGES) + "\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    context.seek(0)
    labels = {RECIPE_LABEL: base_recipe("registry"), ROUTE_LABEL: "registry", SOURCE_LABEL: from_image}
    before = {image.id for image in client.images.list(all=True)}
    made: list[str] = []
    lines: list[str] = []
    progress(f"building {name} from {from_image}")
    try:
        events = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=name,
            buildargs={"FROM_IMAGE": from_image},
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for event in events:
            if "error" in event:
                tail = "\n".join(lines[-10:])
                raise ImageError(f"building {name} from {from_image} failed: {str(event['error']).strip()}\n{tail}")
            for line in str(event.get("stream", "")).splitlines():
                if step := re.fullmatch(r" ---> ([0-9a-f]{12,64})", line):
                    made.append(step.group(1))
                if line.strip():
                    lines.append(line)
                    progress(line)
    except BaseException as exc:
        _remove_new_images(client, made, before)
        if isinstance(exc, docker.errors.DockerException):
            raise ImageError(f"building {name} from {from_image} failed: {engine.describe_exc(exc)}") from None
        raise
    if not base_is_current(client, name):
        raise ImageError(f"the build of {name} from {from_image} did not produce it")
    progress(f"built {name}")
    return name


def _remove_new_images(client: docker.DockerClient, ids: list[str], before: set[str]) -> None:
    """The untagged intermediate images a failed build made (never one that existed before it, like FROM)."""
    for short in reversed(ids):
        with contextlib.suppress(docker.errors.DockerException):
            image = client.images.get(short)
            if image.id not in before and not image.tags:
                client.images.remove(image.id)


def _build_with_debootstrap(client: docker.DockerClient, name: str, suite: str, mirror: str, progress: Progress) -> str:
    """make-rootfs.sh + docker import, no registry; about a minute, as root."""
    repository, tag = _repo_tag(name)
    with tempfile.TemporaryDirectory(prefix="codemonkeys-rootfs-") as tmp:
        root = Path(tmp) / "root"
        try:
            progress(f"debootstrap {suite} from {mirror} into {root}")
            script = recipes_dir() / "base" / "make-rootfs.sh"
            code, lines = _run_streaming(
                ["sh", str(script), str(root), suite, mirror, str(cache_dir() / "debootstrap" / suite)], progress
            )
            if code != 0:
                raise ImageError(f"building the base rootfs failed (exit {code}): {' '.join(lines[-3:])}")
            progress(f"importing the rootfs as {name}")
            _import_rootfs(client, root, repository, tag, suite)
        finally:
            _unmount_under(root)
    if not image_exists(client, name):
        raise ImageError(f"docker import did not produce {name}")
    progress(f"built {name}")
    return name


def _import_rootfs(client: docker.DockerClient, root: Path, repository: str, tag: str, suite: str) -> None:
    tar = subprocess.Popen(
        ["tar", "-C", str(root), "--numeric-owner", "--exclude=./proc/*", "--exclude=./sys/*", "-c", "."],
        stdout=subprocess.PIPE,
    )
    assert tar.stdout is not None
    chunks = iter(lambda: tar.stdout.read(1 << 20), b"")  # type: ignore[union-attr]
    labels = f"{RECIPE_LABEL}={base_recipe('debootstrap')} {ROUTE_LABEL}=debootstrap {SOURCE_LABEL}=debian:{suite}"
    try:
        client.api.import_image(
            src=chunks, repository=repository, tag=tag, changes=[*BASE_CHANGES, f"LABEL {labels}"], stream_src=True
        )
    except docker.errors.APIError as exc:
        raise ImageError(f"docker import failed: {engine.describe_exc(exc)}") from None
    finally:
        tar.stdout.close()
        tar.wait()


def ensure_image(client: docker.DockerClient, name: str, progress: Progress = _quiet) -> None:
    """Present already, or built (our base image, by the route that works here), or pulled where a registry answers.

    Our base image is rebuilt when it was built from an older recipe; where that needs a registry or root this
    process has not got, the old one is used, with a note saying how to rebuild it."""
    if name == BASE_IMAGE:
        if base_is_current(client, name):
            return
        if image_exists(client, name) and not can_build_base(client):
            progress(f"{name} was built from an older recipe: rebuild it with `codemonkeys sandbox build --force`")
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
