"""GitHub's published OpenAPI descriptions (npm @octokit/openapi*), downloaded once and cached for tests.

Fakes of GitHub answer with the examples of these descriptions instead of hand-written JSON, so a response shape
that drifts from GitHub's is caught by githubkit, whose models are generated from the same descriptions. The files
are third-party content: they are downloaded here, never committed.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REST_PACKAGE = "@octokit/openapi@23.0.2"
WEBHOOKS_PACKAGE = "@octokit/openapi-webhooks@12.1.0"
MEMBER = "package/generated/api.github.com.json"
REST_FILE = "openapi-23.0.2-api.github.com.json"
WEBHOOKS_FILE = "openapi-webhooks-12.1.0-api.github.com.json"


def cache_dir() -> Path:
    """Where the descriptions are kept between runs: the user's cache (XDG_CACHE_HOME honoured), not the repo."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codemonkeys" / "test-data" / "octokit"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache so parallel test processes download and extract only once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(directory: Path) -> None:
    """Fetch both tarballs with `npm pack` and keep only the one JSON file of each (the tarballs are 30 MB)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"npm is needed to download GitHub's OpenAPI description ({REST_PACKAGE}, {WEBHOOKS_PACKAGE}) "
            "for the tests: install Node.js and npm (Debian: `apt-get install npm`)."
        )
    with tempfile.TemporaryDirectory(dir=directory, prefix="npm-pack-") as scratch:
        done = subprocess.run(
            [npm, "pack", "--json", "--pack-destination", scratch, REST_PACKAGE, WEBHOOKS_PACKAGE],
            capture_output=True,
            text=True,
            cwd=scratch,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm pack {REST_PACKAGE} {WEBHOOKS_PACKAGE} failed:\n{done.stderr[-2000:]}")
        tarballs = {item["name"]: Path(scratch) / item["filename"] for item in json.loads(done.stdout)}
        for package, target in ((REST_PACKAGE, REST_FILE), (WEBHOOKS_PACKAGE, WEBHOOKS_FILE)):
            name = package.rsplit("@", 1)[0]
            with tarfile.open(tarballs[name]) as tar:
                source = tar.extractfile(MEMBER)
                if source is None:
                    raise RuntimeError(f"{MEMBER} is not a file in {package}")
                partial = Path(scratch) / target
                with source, open(partial, "wb") as out:
                    shutil.copyfileobj(source, out)
            partial.replace(directory / target)


def spec_path(which: str) -> Path:
    """Path of the cached description, "rest" or "webhooks", downloading both first if either is missing."""
    directory = cache_dir()
    files = {"rest": REST_FILE, "webhooks": WEBHOOKS_FILE}
    wanted = directory / files[which]
    if not wanted.exists() or not (directory / files["webhooks" if which == "rest" else "rest"]).exists():
        with _locked(directory):
            if not all((directory / name).exists() for name in files.values()):
                _download(directory)
    return wanted


@functools.cache
def rest_spec() -> dict[str, Any]:
    """GitHub's REST description for api.github.com (@octokit/openapi), parsed once per process."""
    return json.loads(spec_path("rest").read_text())


@functools.cache
def webhooks_spec() -> dict[str, Any]:
    """GitHub's webhooks description for api.github.com (@octokit/openapi-webhooks), parsed once per process."""
    return json.loads(spec_path("webhooks").read_text())


def example(name: str) -> Any:
    """A deep copy of `components.examples[name].value` of the REST description, e.g. "issue" or "reaction"."""
    return copy.deepcopy(rest_spec()["components"]["examples"][name]["value"])


def _resolve_example(entry: dict[str, Any]) -> Any:
    """An example entry's value, following a `$ref` on the entry or on its value (the description uses both)."""
    value = entry.get("value")
    ref = entry.get("$ref") or (value.get("$ref") if isinstance(value, dict) else None)
    if ref:
        return example(ref.rsplit("/", 1)[-1])
    return copy.deepcopy(value)


def response_example(method: str, path: str, status: int) -> Any:
    """The first JSON example the REST description gives for one endpoint's response.

    E.g. `response_example("GET", "/repos/{owner}/{repo}", 200)`.

    Taking the example from the endpoint itself, rather than by a guessed name, keeps each fake route on the shape
    GitHub documents for exactly that route (a list route answers the list example, and so on).
    """
    spec = rest_spec()
    response = spec["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    examples = response["content"]["application/json"]["examples"]
    return _resolve_example(next(iter(examples.values())))


def _webhook_properties(schema: dict[str, Any]) -> set[str]:
    """The property names a webhook schema allows, through its `$ref`s and `allOf`s."""
    if "$ref" in schema:
        return _webhook_properties(webhooks_spec()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= _webhook_properties(part)
    return names


def _project(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Keep only the top-level fields the webhook schema has: REST objects carry some that deliveries do not."""
    allowed = _webhook_properties(schema)
    return {key: item for key, item in value.items() if key in allowed}


def reaction_rollup() -> dict[str, Any]:
    """The `reactions` summary GitHub puts on issues and comments, from the only REST example that has one."""
    for event in example("timeline-issue-events"):
        if isinstance(event.get("reactions"), dict):
            return event["reactions"]
    raise KeyError("no reaction rollup among the REST examples")


def webhook_example(event: str, action: str) -> dict[str, Any]:
    """A real-shaped webhook payload for `event`/`action` (e.g. "issues"/"labeled", "issue_comment"/"created").

    The webhooks description carries full payload examples for only a handful of events (check_run, ping, ...); those
    are returned as they are. It has none for issues/labeled or issue_comment/created, so those payloads are built
    from pieces that are the same objects: `repository` and `sender` from the webhooks description's own delivery
    example (check-run-created), `issue`, `comment` and `label` from the REST examples "issue", "issue-comment" and
    "label", trimmed to the fields the webhook schema has and completed with the `reactions` summary the webhook
    schema requires (REST example "timeline-issue-events") and `performed_via_github_app: null` for the comment.
    """
    spec = webhooks_spec()
    name = "-".join(part for part in (event.replace("_", "-"), action) if part)  # "ping" has no action
    examples = spec["components"].get("examples", {})
    if name in examples:
        return copy.deepcopy(examples[name]["value"])
    if (event, action) not in {("issues", "labeled"), ("issue_comment", "created")}:
        raise KeyError(f"no webhook example for {event}/{action}")
    schema = spec["components"]["schemas"][f"webhook-{name}"]["properties"]
    delivery = copy.deepcopy(examples["check-run-created"]["value"])
    issue = _project(example("issue"), schema["issue"])
    issue["reactions"] = reaction_rollup()
    payload: dict[str, Any] = {"action": action, "issue": issue}
    if event == "issues":
        payload["label"] = example("label")
    else:
        comment = _project(example("issue-comment"), schema["comment"])
        comment["performed_via_github_app"] = None
        comment["reactions"] = reaction_rollup()
        payload["comment"] = comment
    payload["repository"] = delivery["repository"]
    payload["sender"] = delivery["sender"]
    return payload
