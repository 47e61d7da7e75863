"""The resolvelib provider: where hardware, CUDA variants, package metadata and failure rules meet
the search. resolvelib knows nothing of any of them; this module is the only place that does.

Candidates come from the PyPI snapshot, filtered to releases with a wheel for the target
Python/OS/arch/glibc (sdist-only releases are "build from source"). torch is expanded into its
CUDA variants from knowledge/torch.toml. The machine enters as constraints on those candidates
(driver >= the variant's CUDA, the GPU's compute capability in the variant's arch list); the
failure rules enter as exclusions, each remembered with its reason for the explanation.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compatsolve.environment import marker_values
from compatsolve.knowledge import Extension, Knowledge, Rule
from compatsolve.names import canonicalize_name
from compatsolve.records import field, record
from compatsolve.requirement import MarkerTree, marker_holds, parsed
from compatsolve.rules import Truth
from compatsolve.snapshot import Release, ReleaseFile, Snapshot
from compatsolve.versions import in_range, parse_version, variant_cuda

STABLE_AGE_DAYS = 60
PYPI_INDEX = "https://pypi.org/simple"
# Extras a planned package is installed with: SGLang's runtime stack (torch, sgl-kernel,
# flashinfer) sits behind its `srt` extra in the releases that have one.
PLANNED_EXTRAS = {"sglang": "srt"}


@record(kw_only=True)
class Machine:
    """One machine's constraints on candidates (a fleet is several)."""

    label: str
    python: Version
    os_name: str
    arch: str
    glibc: Version | None
    ccs: tuple[Version, ...]
    driver_cuda: Version | None
    toolkit: Version | None
    facts: Mapping[str, Any]

    def tags(self) -> frozenset[str]:
        return supported_tags(
            (self.python.major, self.python.minor), tuple(platform_tags(self.os_name, self.arch, self.glibc))
        )


def supported_tags(python: tuple[int, int], platforms: tuple[str, ...]) -> frozenset[str]:
    """The `py-abi-platform` wheel tags CPython `python` installs on `platforms`: the set that
    packaging.tags' cpython_tags + compatible_tags yield (without importing packaging.tags, whose
    import costs more than a whole resolution here)."""
    major, minor = python
    cpython = f"cp{major}{minor}"
    # py3X, py3, then every older py3Y: pure-Python tags (PEP 425's "compatible" tags)
    generic = [f"py{major}{minor}", f"py{major}", *(f"py{major}{m}" for m in range(minor - 1, -1, -1))]
    # the stable ABI of this and every older CPython 3.2+
    abi3 = [f"cp{major}{m}" for m in range(minor, 1, -1)] if (major, minor) >= (3, 2) else []
    tags = {f"{cpython}-none-any", *(f"{py}-none-any" for py in generic)}
    for platform in platforms:
        tags |= {f"{cpython}-{cpython}-{platform}", f"{cpython}-none-{platform}"}
        tags.update(f"{interp}-abi3-{platform}" for interp in abi3)
        tags.update(f"{py}-none-{platform}" for py in generic)
    return frozenset(tags)


def platform_tags(os_name: str, arch: str, glibc: Version | None) -> Iterator[str]:
    if os_name in ("linux", "wsl"):
        top = glibc.release[1] if glibc is not None and len(glibc.release) > 1 else 39
        for minor in range(top, 4, -1):
            yield f"manylinux_2_{minor}_{arch}"
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(minor)
            if legacy:
                yield f"{legacy}_{arch}"
        yield f"linux_{arch}"
    elif os_name == "windows":
        yield "win_amd64" if arch == "x86_64" else "win_arm64"
    elif os_name == "macos":
        mac_arch = "arm64" if arch == "aarch64" else "x86_64"
        for major in range(15, 10, -1):
            yield f"macosx_{major}_0_{mac_arch}"
            yield f"macosx_{major}_0_universal2"
        for minor in range(16, 8, -1):
            yield f"macosx_10_{minor}_{mac_arch}"
            yield f"macosx_10_{minor}_universal2"


@record
class Candidate:
    name: str
    version: Version
    variant: str | None  # torch CUDA variant ("cu121", "cpu"), else None
    release: Release | None
    wheel_names: tuple[str, ...]  # wheels usable on every target machine
    from_source: bool
    index_url: str
    notes: tuple[str, ...] = ()

    @property
    def wheels(self) -> tuple[ReleaseFile, ...]:
        """The usable wheels with their hashes and URLs (read from the snapshot on demand)."""
        if self.release is None or not self.wheel_names:
            return ()
        names = set(self.wheel_names)
        return tuple(f for f in self.release.files if f.filename in names)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}" + (f"+{self.variant}" if self.variant else "")


@record
class Req:
    name: str
    specifier: SpecifierSet
    reason: str
    variant: str | None = None

    @property
    def spec_text(self) -> str:
        return _spec_text(self.specifier)

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}" + (f" ({self.variant})" if self.variant else "")


@record(frozen=False)
class Exclusions:
    """Why candidates were dropped: name -> [(version label, reason, evidence)]."""

    by_name: dict[str, list[tuple[str, str, tuple[str, ...]]]] = field(default_factory=dict)

    def add(self, name: str, label: str, reason: str, evidence: tuple[str, ...] = ()) -> None:
        self.by_name.setdefault(name, []).append((label, reason, evidence))

    def reasons(self, name: str, limit: int = 4) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for label, reason, evidence in self.by_name.get(name, []):
            entry = seen.setdefault(reason, {"reason": reason, "versions": [], "evidence": list(evidence)})
            entry["versions"].append(label)
        out = sorted(seen.values(), key=lambda e: -len(e["versions"]))[:limit]
        for entry in out:
            versions = entry["versions"]
            entry["versions"] = versions if len(versions) <= 6 else [*versions[:3], "…", *versions[-2:]]
        return out


class Provider:
    """resolvelib provider over the snapshot, the torch variants and the failure rules."""

    def __init__(
        self,
        *,
        kb: Knowledge,
        snapshot: Snapshot,
        machines: Sequence[Machine],
        run_facts: Mapping[str, Any],
        prefer: str,
        banned: Mapping[str, set[str]],
        order: Sequence[str],
    ) -> None:
        self.kb = kb
        self.snapshot = snapshot
        self.machines = machines
        self.run_facts = run_facts
        self.prefer = prefer
        self.banned = banned  # name -> candidate labels excluded by a post-resolution check
        self.order = {name: i for i, name in enumerate(order)}
        self.exclusions = Exclusions()
        self._tags = [m.tags() for m in machines]
        self._cache: dict[str, LazyCandidates] = {}
        self._rules_by_package = _rules_by_package(kb.rules)
        self._today = dt.date.fromisoformat(snapshot.date)
        self._universe = snapshot.names()
        self._marker_cache: dict[tuple[str, str], bool] = {}
        self._deps_cache: dict[str, list[Req]] = {}
        self._visiting: set[str] = set()
        self._producing: set[str] = set()
        self._extension_cache: dict[tuple[str, Version], Extension | None] = {}

    # ---- resolvelib interface

    def identify(self, requirement_or_candidate: Req | Candidate) -> str:
        return requirement_or_candidate.name

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Any],
        backtrack_causes: Sequence[Any],
    ) -> Any:
        return (self.order.get(identifier, len(self.order)), identifier)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Req]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> Callable[[], Iterator[Candidate]]:
        reqs = list(requirements[identifier])
        bad = {c.label for c in incompatibilities[identifier]}
        pool = self.candidates(identifier)

        # A factory: resolvelib then walks candidates lazily, and most older releases are never
        # built or checked once a newer one fits.
        def matches() -> Iterator[Candidate]:
            return (c for c in pool if c.label not in bad and all(self.is_satisfied_by(r, c) for r in reqs))

        return matches

    def is_satisfied_by(self, requirement: Req, candidate: Candidate) -> bool:
        if requirement.variant is not None and candidate.variant != requirement.variant:
            return False
        return in_range(requirement.spec_text, candidate.version)

    def get_dependencies(self, candidate: Candidate) -> list[Req]:
        key = candidate.label
        if key not in self._deps_cache:
            self._deps_cache[key] = self._dependencies(candidate)
        return self._deps_cache[key]

    def _dependencies(self, candidate: Candidate) -> list[Req]:
        return [
            Req(name, specifier, f"{candidate.label} requires {name}{specifier}")
            for name, specifier in self._requirements(candidate, planned=True)
        ]

    def unplanned_dependencies(self, candidate: Candidate) -> set[str]:
        """What this release needs on the target that the plan leaves to the installer: projects
        outside the snapshot, and the nvidia-* runtimes torch brings along."""
        return {name for name, _ in self._requirements(candidate, planned=False)}

    def _planned(self, name: str) -> bool:
        return name in self._universe and not name.startswith("nvidia-")

    def _requirements(self, candidate: Candidate, *, planned: bool) -> Iterator[tuple[str, SpecifierSet]]:
        """The release's Requires-Dist that apply on every target machine (markers, the planned
        extra), restricted to the projects the plan pins (`planned`) or to the others."""
        if candidate.release is None or candidate.release.requires_dist is None:
            return
        extra = PLANNED_EXTRAS.get(candidate.name, "")
        for line in candidate.release.requires_dist:
            # Cheap filters before a full parse: big packages list hundreds of requirements of
            # other extras or of the other side.
            if self._planned(requirement_name(line)) is not planned:
                continue
            if "extra" in line and not (extra and extra in line):
                continue
            parsed = requirement_parts(line)
            if parsed is None:
                continue
            name, specifier, marker = parsed
            if self._planned(name) is not planned:
                continue
            if marker is not None and not self._marker_holds(line, marker, extra):
                continue
            yield name, specifier

    def narrow_requirement_selection(
        self,
        identifiers: Iterable[str],
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Any],
        backtrack_causes: Sequence[Any],
    ) -> Iterable[str]:
        return identifiers

    # ---- candidates

    def _marker_holds(self, line: str, marker: MarkerTree, extra: str = "") -> bool:
        key = (line, extra)
        if key not in self._marker_cache:
            self._marker_cache[key] = self._evaluate_marker(line, marker, extra)
        return self._marker_cache[key]

    def _evaluate_marker(self, line: str, marker: MarkerTree, extra: str) -> bool:
        for machine in self.machines:
            values = {
                **marker_values(str(machine.python), machine.os_name, machine.arch),
                "implementation_name": "cpython",  # the wheel tags planned for are CPython's
                "platform_python_implementation": "CPython",
                "extra": extra,
            }
            if not marker_holds(line, marker, values):
                return False
        return True

    def candidates(self, name: str) -> LazyCandidates:
        """The usable candidates of a project, best first, built on demand."""
        if name not in self._cache:
            self._cache[name] = LazyCandidates(self._produce(name))
        return self._cache[name]

    def _ordered_releases(self, name: str) -> Iterator[tuple[Version, Release]]:
        """Releases in preference order: (with --prefer stable) those at least STABLE_AGE_DAYS
        older than the snapshot first, then newest first. Versions are parsed as they are tried."""
        releases = self.snapshot.project(name)
        order = self.snapshot.newest_first(name)
        if self.prefer == "stable":
            cutoff = (self._today - dt.timedelta(days=STABLE_AGE_DAYS)).isoformat()  # ISO dates sort as text
            order = [vu for vu in order if vu[1] <= cutoff] + [vu for vu in order if vu[1] > cutoff]
        for text, _ in order:
            yield Version(text), releases[text]

    def _produce(self, name: str) -> Iterator[Candidate]:
        self._producing.add(name)
        try:
            yield from self._build(name)
        finally:
            self._producing.discard(name)

    def _build(self, name: str) -> Iterator[Candidate]:
        for version, release in self._ordered_releases(name):
            label = f"{name} {version}"
            if release.requires_dist is None:
                self.exclusions.add(name, label, "its metadata (Requires-Dist) could not be read: unknown")
                continue
            if not self._python_ok(release):
                self.exclusions.add(name, label, f"requires Python {release.requires_python}")
                continue
            wheels = self._usable_wheels(release)
            from_source = False
            if not wheels:
                if release.wheel_names:
                    self.exclusions.add(name, label, "no wheel for the target Python/OS/arch/glibc")
                    continue
                from_source = True
                if self._needs_toolkit(name, version) and not all(m.toolkit for m in self.machines):
                    self.exclusions.add(
                        name,
                        label,
                        "sdist only: compiling it needs a CUDA toolkit (nvcc), "
                        "and none is known on the target",
                    )
                    continue
            if name == "torch":
                yield from self._torch_variants(version, release, wheels)
                continue
            candidate = Candidate(
                name,
                version,
                None,
                release,
                wheels,
                from_source,
                PYPI_INDEX,
                ("built from source (sdist only)",) if from_source else (),
            )
            if self._allowed(candidate):
                yield candidate

    def _extension(self, name: str, version: Version) -> Extension | None:
        """The knowledge/extensions.toml entry covering this release, if any."""
        key = (name, version)
        if key not in self._extension_cache:
            self._extension_cache[key] = self._find_extension(name, version)
        return self._extension_cache[key]

    def _find_extension(self, name: str, version: Version) -> Extension | None:
        for entry in self.kb.extensions:
            if canonicalize_name(entry.package) == name and (
                entry.versions == "*" or in_range(entry.versions, version)
            ):
                return entry
        return None

    def _needs_toolkit(self, name: str, version: Version) -> bool:
        """Compiling this sdist needs nvcc: as knowledge/extensions.toml says, and for releases of
        a package it lists that no entry covers (unknown, so not assumed buildable)."""
        entry = self._extension(name, version)
        if entry is not None:
            return bool(entry.needs_toolkit_to_build)
        return any(canonicalize_name(e.package) == name for e in self.kb.extensions)

    def _pins_satisfiable(self, candidate: Candidate) -> str | None:
        """Look ahead one step: an exact pin (`torch==2.4.0`) that no usable candidate can meet
        rules this candidate out now, instead of after a long backtrack."""
        if candidate.name in self._visiting:
            return None
        self._visiting.add(candidate.name)
        try:
            for req in self.get_dependencies(candidate):
                if not any(spec.operator in ("==", "===") for spec in req.specifier):
                    continue
                if req.name in self._producing:
                    continue  # its candidates are being built right now, further up this stack
                if not any(self.is_satisfied_by(req, other) for other in self.candidates(req.name)):
                    return f"it pins {req.name}{req.specifier}, and no usable build of that fits here"
        finally:
            self._visiting.discard(candidate.name)
        return None

    def _python_ok(self, release: Release) -> bool:
        if not release.requires_python:
            return True
        try:
            spec = SpecifierSet(release.requires_python)
        except Exception:
            return True
        return all(spec.contains(m.python, prereleases=True) for m in self.machines)

    def _usable_wheels(self, release: Release) -> tuple[str, ...]:
        usable = []
        for wheel in release.wheel_names:
            tags = wheel_tags(wheel)
            if tags and all(tags & machine_tags for machine_tags in self._tags):
                usable.append(wheel)
        return tuple(usable)

    def _torch_variants(self, version: Version, release: Release, wheels: tuple[str, ...]) -> list[Candidate]:
        facts = self.kb.torch_release(str(version))
        label = f"torch {version}"
        if facts is None:
            self.exclusions.add(
                "torch", label, "no build facts for this torch release in knowledge/torch.toml"
            )
            return []
        out = []
        needs_gpu = any(m.ccs for m in self.machines)
        # Variants the knowledge base lists; where it lists none, the PyPI build is still known.
        variants = facts.variants or ((facts.pypi_variant,) if facts.pypi_variant else ())
        on_linux = all(m.os_name in ("linux", "wsl") for m in self.machines)
        if not needs_gpu and not on_linux:
            variants = ("cpu",)  # macOS/Windows: PyPI's wheel is the CPU build (MPS on macOS)
        elif not needs_gpu and "cpu" not in variants and facts.pypi_variant:
            variants = (facts.pypi_variant,)  # the PyPI CUDA build also runs on a CPU-only machine
        for variant in variants:
            pypi_default = variant == facts.pypi_variant
            index = (
                PYPI_INDEX
                if (pypi_default and on_linux) or (variant == "cpu" and not on_linux)
                else self.kb.torch_index_url.format(variant=variant)
            )
            vlabel = f"torch {version}+{variant}"
            if needs_gpu and variant == "cpu":
                continue
            if not needs_gpu and variant != "cpu" and "cpu" in variants:
                continue
            why = self._variant_problem(variant, facts.arch.get(variant))
            if why:
                self.exclusions.add("torch", vlabel, why[0], why[1])
                continue
            files = wheels if index == PYPI_INDEX else ()
            candidate = Candidate("torch", version, variant, release, files, False, index)
            if self._allowed(candidate):
                out.append(candidate)
        return sorted(out, key=_variant_rank, reverse=True)

    def _variant_problem(
        self, variant: str, arch: tuple[str, ...] | None
    ) -> tuple[str, tuple[str, ...]] | None:
        cuda = parse_version(variant_cuda(variant)) if variant_cuda(variant) else None
        for m in self.machines:
            if cuda is not None and m.driver_cuda is not None and cuda > m.driver_cuda:
                return (
                    f"built for CUDA {cuda}; the driver on {m.label} supports CUDA <= {m.driver_cuda}",
                    ("https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html",),
                )
            if cuda is not None and m.ccs and not arch:
                return (
                    "the compute capabilities its kernels cover are not in knowledge/torch.toml: "
                    "unknown, so not assumed to fit",
                    (),
                )
            if cuda is not None and arch and m.ccs:
                listed = [parse_version(a.removesuffix("+PTX")) for a in arch]
                for cc in m.ccs:
                    if not any(v is not None and v.release[0] == cc.release[0] and v <= cc for v in listed):
                        return (
                            f"its kernels cover sm_{', sm_'.join(a.replace('.', '') for a in arch)}; "
                            f"{m.label} has compute capability {cc}",
                            (),
                        )
        return None

    def _allowed(self, candidate: Candidate) -> bool:
        if candidate.label in self.banned.get(candidate.name, set()):
            return False
        blocked = self._pins_satisfiable(candidate) if candidate.name != "torch" else None
        if blocked:
            self.exclusions.add(candidate.name, candidate.label, blocked)
            return False
        entry = self._extension(candidate.name, candidate.version)
        floor = parse_version(entry.cc_min) if entry is not None and entry.cc_min else None
        if entry is not None and floor is not None:
            for machine in self.machines:
                if machine.ccs and min(machine.ccs) < floor:
                    self.exclusions.add(
                        candidate.name,
                        candidate.label,
                        f"its kernels need compute capability >= {floor}; {machine.label} "
                        f"has {min(machine.ccs)}",
                        entry.sources[:2],
                    )
                    return False
        rules = self._rules_by_package.get(candidate.name, ())
        own = candidate_facts(candidate) if rules else {}
        per_machine = (
            [{**machine.facts, **self.run_facts, **own} for machine in self.machines] if rules else []
        )
        for rule in rules:
            for facts in per_machine:
                assert rule.when is not None
                if rule.when.evaluate(facts) is Truth.TRUE:
                    self.exclusions.add(
                        candidate.name, candidate.label, f"{rule.title} [{rule.id}]", rule.evidence[:2]
                    )
                    return False
        return True


class LazyCandidates:
    """A cached, lazily extended sequence of candidates: iterating it builds candidates only as
    far as the iteration goes; every later iteration reuses what was built."""

    def __init__(self, produce: Iterator[Candidate]) -> None:
        self._produce = produce
        self._built: list[Candidate] = []
        self._exhausted = False

    def __iter__(self) -> Iterator[Candidate]:
        index = 0
        while True:
            if index < len(self._built):
                yield self._built[index]
                index += 1
                continue
            if self._exhausted:
                return
            try:
                self._built.append(next(self._produce))
            except StopIteration:
                self._exhausted = True
                return


def _variant_rank(candidate: Candidate) -> tuple[int, Version]:
    """PyPI's build first (its hashes are known), then the newest CUDA."""
    cuda_text = variant_cuda(candidate.variant) if candidate.variant else None
    cuda = parse_version(cuda_text) if cuda_text else None
    return (1 if candidate.index_url == PYPI_INDEX else 0, cuda or Version("0"))


def candidate_facts(candidate: Candidate) -> dict[str, Any]:
    """The rule facts a pinned candidate contributes: its version, and torch's build."""
    facts: dict[str, Any] = {f"pkg.{candidate.name}": str(candidate.version)}
    if candidate.name == "torch" and candidate.variant:
        facts["torch.variant"] = candidate.variant
        cuda = variant_cuda(candidate.variant)
        if cuda:
            facts["torch.cuda"] = cuda
            facts["torch.cuda_major"] = cuda.split(".")[0]
    return facts


_NAME_PREFIX = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@cache
def wheel_tags(filename: str) -> frozenset[str]:
    """`py-abi-platform` tags of a wheel file name, compressed tag sets expanded (PEP 425)."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        return frozenset()
    py, abi, plat = parts[-3:]
    return frozenset(f"{p}-{a}-{q}" for p in py.split(".") for a in abi.split(".") for q in plat.split("."))


@cache
def requirement_name(line: str) -> str:
    match = _NAME_PREFIX.match(line)
    return canonicalize_name(match.group(1)) if match else ""


@cache
def requirement_parts(line: str) -> tuple[str, SpecifierSet, MarkerTree | None] | None:
    """(normalized name, specifier, marker) of a Requires-Dist line, parsed once per process
    (from the snapshot cache's parsed lines where it has them)."""
    found = parsed(line)
    if found is None:
        return None
    name, specifier, marker = found
    return name, SpecifierSet(specifier), marker


@cache
def _spec_text(specifier: SpecifierSet) -> str:
    return str(specifier)


def _rules_by_package(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
    """Rules that reject setups and read a package's version: the candidates they exclude."""
    index: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.when is None or not rule.rejects_setups:
            continue
        for fact in rule.when.facts():
            if fact.startswith("pkg."):
                index.setdefault(fact[4:], []).append(rule)
    return index
