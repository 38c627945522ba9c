"""Runs inside an environment's own interpreter (CPython 3.6 or newer, standard library and pip only): on the
host for local environments and in the build container for docker ones, so both install the same way. Kept
free of this package's imports and of syntax newer than 3.6.

  python envs_helper.py install REQUEST.json REPORT.json
      Installs groups of requirement lines with this interpreter's pip. A group is tried whole first, then
      line by line; a pin `name==X` that does not install is replaced by the nearest version pip offers for
      this interpreter that does (versions with a build for it first, source-only ones after). A group marked
      `constrain` may only add what agrees with the versions already installed; in a group marked `conda`
      (an environment.yml's), a package the index has no version of at all is left out with a note.
  python envs_helper.py detach TREE NAME...
      Removes what installing the repository at TREE put in the environment for the repository itself (its
      dependencies stay): distributions named NAME or pointing into TREE. Their console scripts are left as
      shims importing the code from sys.path, which the sandbox points at its own tree.
  python envs_helper.py inplace [BUILD_DEPS]
      Run in a repository's root by the sandbox setup: builds in the tree what an install would have built
      (C extensions in place, egg-info metadata and the version files setuptools_scm writes with it), with
      the build requirements in BUILD_DEPS first on the path when the install builds in isolation; links
      packages kept under lib/ into the root, where the sandbox's PYTHONPATH finds them.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

PROBE = "0.0.0.dev0+codemonkeys.probe"  # a version no index has: pip answers with the versions it does have
MAX_TRIES = 4
REPORT_MARK = "CODEMONKEYS-REPORT "
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*===?\s*([^\s;,#]+)\s*(;.*)?$")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
NOT_ON_INDEX = "a conda package the package index has no version of for {python}: left out"
EXTENSION_MARKS = re.compile(r"ext_modules|Extension\(|cythonize|get_extensions|numpy\.distutils|build_ext")


def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run(argv, env=None):
    """Runs argv with its output passed through (the build log) and kept for parsing."""
    say("$ " + " ".join(argv))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.communicate()[0].decode("utf-8", "replace")
    sys.stdout.write(out)
    sys.stdout.flush()
    return proc.returncode, out


def pip(*args):
    return run([sys.executable, "-m", "pip", *args])


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version):
    try:
        from pip._vendor.packaging.version import parse

        return (0, parse(version))
    except Exception:
        return (1, tuple(int(n) for n in re.findall(r"\d+", version)))


def is_prerelease(version):
    try:
        from pip._vendor.packaging.version import parse

        return parse(version).is_prerelease
    except Exception:
        return bool(re.search(r"(a|b|rc|dev)\d*$", version))


def is_option(line):
    return line.startswith("-") and not line.startswith(("-e", "--editable"))


def install_lines(lines, options, args):
    """pip install of requirement lines through a requirements file, so option lines apply as written."""
    say("  requirements: " + " | ".join(options + lines))
    handle, path = tempfile.mkstemp(prefix="codemonkeys-req-", suffix=".txt")
    with os.fdopen(handle, "w") as out:
        out.write("\n".join(options + lines) + "\n")
    try:
        return pip("install", *args, "-r", path)
    finally:
        os.unlink(path)


def offered(name, options, only_binary):
    """The versions of `name` pip finds for this interpreter (with a build for it, when `only_binary`)."""
    args = ["--no-deps"] + (["--only-binary=:all:"] if only_binary else [])
    _, out = install_lines([name + "==" + PROBE], options, args)
    found = re.search(r"\(from versions: ([^)]*)\)", out)
    if not found or found.group(1).strip() == "none":
        return []
    return [v.strip() for v in found.group(1).split(",") if v.strip()]


def nearest_first(pinned, versions):
    """Versions ordered by their distance from `pinned` in version order, the newer of two equally near first;
    pre-releases only when the pin is one."""
    key = version_key(pinned)
    usable = sorted(
        {v for v in versions if version_key(v) != key and (is_prerelease(pinned) or not is_prerelease(v))},
        key=version_key,
    )
    below = [v for v in usable if version_key(v) < key][::-1]
    above = [v for v in usable if version_key(v) > key]
    order = []
    while below or above:
        if above:
            order.append(above.pop(0))
        if below:
            order.append(below.pop(0))
    return order


def fall_back(pin, options, args):
    """The nearest version that installs in place of a pin that does not, with a note saying why; or None."""
    name, extras, version, marker = pin.group(1), pin.group(2) or "", pin.group(3), pin.group(4) or ""
    with_build = offered(name, options, True)
    everything = offered(name, options, False)
    order = nearest_first(version, with_build)
    order += [v for v in nearest_first(version, everything) if v not in with_build]
    python = f"Python {sys.version_info[0]}.{sys.version_info[1]}"
    if version not in everything:
        why = f"pip finds no {name} {version} for {python}"
    elif version not in with_build:
        why = f"{name} {version} has no build for {python} and did not build from source"
    else:
        why = f"{name} {version} did not install on {python}"
    for candidate in order[:MAX_TRIES]:
        code, _ = install_lines([name + extras + "==" + candidate + marker], options, args)
        if code == 0:
            return candidate, f"{why}; {candidate} is the nearest version that installs"
    return None


def install_group(group, choices, failed):
    lines = [line.strip() for line in group["lines"] if line.strip() and not line.strip().startswith("#")]
    options = [line for line in lines if is_option(line)]
    lines = [line for line in lines if not is_option(line)]
    if not lines:
        return
    say("== " + group["name"])
    constraints = write_constraints() if group.get("constrain") else None
    try:
        install_lines_of(group, lines, [*options, "-c " + constraints] if constraints else options, choices, failed)
    finally:
        if constraints:
            os.unlink(constraints)


def install_lines_of(group, lines, options, choices, failed):
    args = group.get("args", [])
    extra = {"target": args[args.index("--target") + 1]} if "--target" in args else {}
    code, _ = install_lines(lines, options, args)
    if code == 0:
        choices.extend(dict(requested=line, installed="", note=group.get("note", ""), **extra) for line in lines)
        return
    if len(lines) > 1:
        say("== " + group["name"] + ": together they do not install; one by one")
    for line in lines:
        if len(lines) > 1:
            code, _ = install_lines([line], options, args)
        if code == 0:
            choices.append(dict(requested=line, installed="", note=group.get("note", ""), **extra))
            continue
        if group.get("optional"):
            note = "optional, did not install: kept what the environment had"
            choices.append({"requested": line, "installed": "", "note": note})
            continue
        name = NAME.match(line)
        if group.get("conda") and name and not offered(name.group(1), options, False):
            # A conda package (environment.yml) that the package index has no version of for this interpreter.
            note = NOT_ON_INDEX.format(python=f"Python {sys.version_info[0]}.{sys.version_info[1]}")
            choices.append({"requested": line, "installed": "", "note": note})
            continue
        pin = PIN.match(line)
        chosen = fall_back(pin, options, args) if pin else None
        if chosen is None:
            failed.append(line)
            continue
        version, note = chosen
        choices.append({"requested": line, "installed": pin.group(1) + "==" + version, "note": note})


def write_constraints():
    """A constraints file pinning everything installed, so a group only adds what agrees with it."""
    pins = sorted(name + "==" + version for name, version in installed_versions().values())
    handle, path = tempfile.mkstemp(prefix="codemonkeys-constraints-", suffix=".txt")
    with os.fdopen(handle, "w") as out:
        out.write("\n".join(pins) + "\n")
    return path


def installed_versions(target=None):
    """{normalized name: (name, version)} of the environment, or of a `--target` directory."""
    code, out = pip("list", "--format=json", *(["--path", target] if target else []))
    listed = [line for line in out.splitlines() if line.startswith("[")]
    if code != 0 or not listed:
        return {}
    try:
        items = json.loads(listed[-1])
    except ValueError:
        return {}
    return {normalize(item["name"]): (item["name"], item["version"]) for item in items}


def install(request_path, report_path):
    with open(request_path) as handle:
        request = json.load(handle)
    choices, failed = [], []
    for group in request["groups"]:
        install_group(group, choices, failed)
    versions = {None: installed_versions()}
    for choice in choices:
        target = choice.pop("target", None)
        if target not in versions:
            versions[target] = installed_versions(target)
        found = NAME.match(choice["requested"])
        if not found or normalize(found.group(1)) not in versions[target]:
            continue
        name, version = versions[target][normalize(found.group(1))]
        final = name + "==" + version
        pin = PIN.match(choice["requested"])
        wanted = choice["installed"].partition("==")[2] or (pin.group(3) if pin else version)
        if version != wanted:
            changed = f"{wanted} was then changed by a later requirement"
            choice["note"] = f"{choice['note']}; {changed}" if choice["note"] else changed
        choice["installed"] = final
    report = {"python": ".".join(str(n) for n in sys.version_info[:3]), "choices": choices, "failed": failed}
    with open(report_path, "w") as handle:
        json.dump(report, handle)
    say(REPORT_MARK + json.dumps(report))
    return 1 if failed else 0


def distributions():
    """(name, version, metadata path, direct_url.json text, console scripts) of every installed distribution."""
    try:
        from importlib import metadata
    except ImportError:
        metadata = None
    found = []
    if metadata is not None:
        for dist in metadata.distributions():
            if not dist.metadata["Name"]:
                continue
            scripts = [(ep.name, ep.value) for ep in dist.entry_points if ep.group == "console_scripts"]
            path = str(getattr(dist, "_path", ""))
            found.append((dist.metadata["Name"], dist.version, path, dist.read_text("direct_url.json") or "", scripts))
        return found
    import pkg_resources

    for dist in pkg_resources.working_set:
        entries = dist.get_entry_map("console_scripts")
        scripts = [(name, str(ep).split("=", 1)[1].strip()) for name, ep in entries.items()]
        direct = dist.get_metadata("direct_url.json") if dist.has_metadata("direct_url.json") else ""
        found.append((dist.project_name, dist.version, dist.location or "", direct, scripts))
    return found


SHIM = """#!{python}
# codemonkeys: `{script}` of the repository, imported from sys.path (the sandbox's tree), not installed here
import importlib
import sys

target = importlib.import_module({module!r})
for part in {attrs!r}:
    target = getattr(target, part)
sys.exit(target())
"""


def detach(tree, names):
    tree = os.path.realpath(tree)
    wanted = {normalize(name) for name in names}
    chosen = {}
    for name, version, path, direct, scripts in distributions():
        inside = os.path.realpath(path).startswith(tree + os.sep) if path else False
        if normalize(name) in wanted or inside or ("file://" + tree) in direct:
            entry = chosen.setdefault(normalize(name), {"name": name, "version": version, "scripts": []})
            entry["scripts"].extend(scripts)
    removed = []
    for entry in chosen.values():
        code, _ = pip("uninstall", "-y", entry["name"])
        if code == 0:
            removed.append(entry["name"] + "==" + entry["version"])
    bin_dir = os.path.dirname(os.path.abspath(sys.executable))
    shims = []
    for entry in chosen.values():
        for script, value in entry["scripts"]:
            module, _, attr = value.partition(":")
            target = os.path.join(bin_dir, script)
            if not attr or os.path.exists(target):
                continue
            attrs = [part for part in re.sub(r"\[.*\]", "", attr).strip().split(".") if part]
            with open(target, "w") as handle:
                handle.write(SHIM.format(python=sys.executable, script=script, module=module.strip(), attrs=attrs))
            os.chmod(target, 0o755)
            shims.append(script)
    say(REPORT_MARK + json.dumps({"removed": removed, "shims": shims}))
    return 0


def link_lib_packages():
    """lib/<package> linked as <package> at the root (matplotlib's layout): the sandbox puts only the root and
    src/ on PYTHONPATH."""
    linked = []
    if not os.path.isdir("lib"):
        return linked
    for entry in sorted(os.listdir("lib")):
        source = os.path.join("lib", entry)
        package = os.path.isdir(source) and (
            os.path.isfile(os.path.join(source, "__init__.py"))
            or entry.endswith((".egg-info", ".dist-info"))
            or any(os.path.isfile(os.path.join(source, sub, "__init__.py")) for sub in os.listdir(source))
        )
        module = os.path.isfile(source) and entry.endswith(".py")
        if (package or module) and not entry.startswith((".", "_")) and not os.path.lexists(entry):
            os.symlink(source, entry)
            linked.append(entry)
    return linked


def inplace(build_deps=None):
    env = dict(os.environ)
    if build_deps:
        # As pip's build isolation would have it: the build requirements shadow the environment's.
        env["PYTHONPATH"] = os.pathsep.join([build_deps] + [p for p in [env.get("PYTHONPATH")] if p])
    steps = []
    if os.path.isfile("setup.py"):
        with open("setup.py", "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
        if EXTENSION_MARKS.search(text):
            steps.append([sys.executable, "setup.py", "-q", "build_ext", "--inplace"])
        steps.append([sys.executable, "setup.py", "-q", "egg_info"])
    elif os.path.isfile("pyproject.toml"):
        with open("pyproject.toml", "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
        if "setuptools.build_meta" in text:
            steps.append([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info"])
    for argv in steps:
        code, _ = run(argv, env)
        if code != 0:
            say("codemonkeys: the in-place build failed: " + " ".join(argv[1:]))
            return code
    linked = link_lib_packages()
    if linked:
        say("codemonkeys: linked from lib/ into the root: " + ", ".join(linked))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "install":
        return install(argv[1], argv[2])
    if len(argv) >= 2 and argv[0] == "detach":
        return detach(argv[1], argv[2:])
    if argv[:1] == ["inplace"] and len(argv) <= 2:
        return inplace(*argv[1:])
    say(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
