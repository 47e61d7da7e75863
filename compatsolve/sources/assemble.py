"""Assemble the Environment a command judges from every source the user named.

Layers, later winning: the live machine or saved snapshots -> pasted reports -> another
interpreter's site-packages -> requirements/lock files -> `--with` -> `--target` -> workload
settings. Explicit flags therefore win over report facts. The live probe is used only when no
machine source (`--target`, `--from`, `--report`) is given; the running interpreter's packages
only when no package source is given either.
"""

from __future__ import annotations

from pathlib import Path

from compatsolve.engines import ENGINES
from compatsolve.environment import Environment, Notice, RunSettings, merge
from compatsolve.errors import InputError
from compatsolve.fileio import read_text_input
from compatsolve.knowledge import Knowledge, ModelCard
from compatsolve.modelname import params_from_name, quantization_from_name
from compatsolve.records import field, record, replace
from compatsolve.versions import parse_version


@record(kw_only=True)
class EnvironmentRequest:
    targets: tuple[str, ...] = ()
    from_files: tuple[str, ...] = ()
    reports: tuple[str, ...] = ()
    with_packages: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    locks: tuple[str, ...] = ()
    python_path: str | None = None
    site_packages: tuple[str, ...] = ()
    run: RunSettings = field(default_factory=RunSettings)
    lenient: bool = False  # audit/diagnose: unresolvable facts become warnings, not errors
    # the error message or log being diagnosed: the facts it states (a traceback's paths, an
    # nvidia-smi table or pip list pasted with it) are the lowest layer, below every source
    error_text: str | None = None

    @property
    def machine_given(self) -> bool:
        return bool(self.targets or self.from_files or self.reports)

    @property
    def packages_given(self) -> bool:
        return bool(
            self.requirements
            or self.locks
            or self.python_path
            or self.site_packages
            or self.reports
            or self.from_files
        )


def build_environments(request: EnvironmentRequest, kb: Knowledge) -> list[Environment]:
    """One environment per machine: several `--target`/`--from` make a fleet (plan)."""
    # Each source module is imported only when its option is used: a plain `plan --target`
    # should not pay for the report parsers' regexes or the probe's NVML bindings.
    machines: list[Environment] = []
    if request.from_files:
        from compatsolve.sources import snapshot

        machines += [snapshot.load_snapshot(f) for f in request.from_files]
    if request.targets:
        from compatsolve.sources import target

        machines += [target.parse_target(spec, kb, lenient=request.lenient) for spec in request.targets]
    shared: list[Environment] = []
    if request.error_text:
        from compatsolve.sources import report as reported

        stated = reported.parse_report(request.error_text, "the error text", kb, message=True)
        shared.append(replace(stated, notices=()))  # a log is not a report: no layout notices
    if not request.machine_given:
        from compatsolve.sources.probe import probe_machine

        shared.append(probe_machine())
    if request.reports:
        from compatsolve.sources import report

        for path in request.reports:
            text = read_text_input(path, "report")
            shared.append(report.parse_report(text, "stdin" if path == "-" else path, kb))
    if request.python_path:
        shared.append(_other_interpreter(Path(request.python_path)))
    if request.site_packages:
        from compatsolve.sources.probe import probe_site_packages

        dirs = [Path(d) for d in request.site_packages]
        for d in dirs:
            if not d.is_dir():
                raise InputError(f"--site-packages {d}: not a directory")
        shared.append(
            probe_site_packages(
                dirs, python_version=None, python_abi=None, executable=None, source="--site-packages"
            )
        )
    elif not request.packages_given and not request.targets and not request.python_path:
        from compatsolve.sources.probe import probe_python_here

        shared.append(probe_python_here())
    if request.requirements or request.locks or request.with_packages:
        from compatsolve.sources import declared

        shared += [declared.parse_requirements_file(p) for p in request.requirements]
        shared += [declared.parse_lock_file(p) for p in request.locks]
        if request.with_packages:
            shared.append(declared.parse_with(list(request.with_packages), lenient=request.lenient))
    run_layer = _run_layer(request, kb)
    if request.run.model and run_layer.run.model is None and not run_layer.notices:
        run_layer = replace(
            run_layer,
            notices=(
                Notice(
                    source="--model",
                    severity="warning",
                    message=f"unknown model {request.run.model!r}: model checks are skipped",
                ),
            ),
        )
    if request.run.engine and request.run.engine not in ENGINES:
        # still the tool that failed: kept as run.engine, so findings from the message name it
        unknown = Notice(
            source="--engine",
            severity="warning",
            message=f"engine {request.run.engine!r} is not one the rules name: engine-specific "
            "checks are skipped",
        )
        run_layer = replace(run_layer, notices=(*run_layer.notices, unknown))

    # Reports and declared packages describe the software; snapshots and targets the machine.
    # Targets are explicit flags, so they are layered last, above report facts.
    from_envs = machines[: len(request.from_files)]
    target_envs = machines[len(request.from_files) :]
    if not machines:
        return [finish(merge(*shared, run_layer), kb)]
    results = []
    for env in from_envs:
        results.append(finish(merge(env, *shared, run_layer), kb))
    for env in target_envs:
        results.append(finish(merge(*shared, env, run_layer), kb))
    return results


def _other_interpreter(python: Path) -> Environment:
    from compatsolve.sources.installed import site_dirs_of_interpreter
    from compatsolve.sources.probe import probe_site_packages

    dirs, version = site_dirs_of_interpreter(python)
    return probe_site_packages(
        dirs, python_version=version, python_abi=None, executable=str(python), source=f"--python {python}"
    )


def _run_layer(request: EnvironmentRequest, kb: Knowledge) -> Environment:
    """The workload settings, with `--model` resolved: a catalog entry, else the model's own
    files on this machine (a directory, or a repo id in the Hugging Face cache)."""
    run, model = request.run, request.run.model
    if not model:
        return Environment(run=run)
    if run.quantization is None:
        # a quantization the name states (`...-AWQ`, `.Q4_K_M`) counts where none is given
        run = replace(run, quantization=quantization_from_name(model))
    card = kb.model(model)
    if card is not None:
        return Environment(run=replace(run, model=card.id))
    from compatsolve.sources.hfmodel import local_model_card

    try:
        local = local_model_card(model, kb)
    except InputError as exc:
        if not request.lenient:
            raise
        notice = Notice(source="--model", severity="warning", message=f"{exc}: model checks are skipped")
        return Environment(run=replace(run, model=None), notices=(notice,))
    if local is not None:
        return Environment(
            run=replace(run, model=local.id),
            model_card=local,
            origins={"model_card": local.notes or "the model's files"},
        )
    if not request.lenient:
        close = kb.model_suggestions(model)
        hint = f"; did you mean: {', '.join(close)}?" if close else " (see docs/knowledge.md)"
        raise InputError(
            f"--model: unknown model {model!r}: not in the catalog, not a model directory and "
            f"not in the Hugging Face cache{hint}"
        )
    size = params_from_name(model)
    if size is None:
        return Environment(run=replace(run, model=None))
    # the name states the size: memory checks can run, nothing else about the model is known
    notice = Notice(
        source="--model",
        severity="warning",
        message=f"unknown model {model!r}: only its size, {size:g}B parameters as its name states, "
        "is judged; other model checks are skipped",
    )
    return Environment(
        run=run,
        model_card=_sized_only_card(model, size),
        notices=(notice,),
        origins={"model_card": "the parameter count stated in --model's name"},
    )


def _sized_only_card(name: str, params_b: float) -> ModelCard:
    """A catalog-less model card that knows nothing but the parameter count."""
    return ModelCard(
        id=name,
        hf_repo=name,
        aliases=(),
        series="unknown",
        family=None,
        variant=None,
        architecture=None,
        model_type=None,
        params_b=params_b,
        active_params_b=None,
        moe=None,
        vision=None,
        layers=None,
        attention_heads=None,
        kv_heads=None,
        hidden_size=None,
        head_dim=None,
        vocab_size=None,
        context_length=None,
        torch_dtype=None,
        rope_scaling=None,
        trust_remote_code=None,
        min_transformers=None,
        min_vllm=None,
        min_sglang=None,
        quantized=(),
        notes="parameter count read from the model's name",
        sources=(),
    )


def finish(env: Environment, kb: Knowledge) -> Environment:
    """Fill what the knowledge base can derive: GPU catalog entries, driver -> max CUDA."""
    if env.gpus:
        gpus = []
        for gpu in env.gpus:
            model = kb.gpu(gpu.catalog_id or gpu.name)
            if model is not None:
                gpu = replace(
                    gpu,
                    catalog_id=model.id,
                    cc=gpu.cc or model.cc,
                    memory_total_mib=gpu.memory_total_mib
                    or (int(model.memory_gib * 1024) if model.memory_gib else None),
                )
            gpus.append(gpu)
        env = replace(env, gpus=tuple(gpus))
    if env.driver_version and not env.driver_cuda:
        derived = max_cuda_for_driver(env.driver_version, env.os_name, kb)
        if derived:
            env = replace(
                env,
                driver_cuda=derived,
                origins={**env.origins, "driver_cuda": "derived from the driver via knowledge/cuda.toml"},
            )
    return env


def max_cuda_for_driver(driver: str, os_name: str | None, kb: Knowledge) -> str | None:
    """The newest CUDA release whose own minimum driver is <= `driver` (NVIDIA's table)."""
    version = parse_version(driver)
    if version is None:
        return None
    best = None
    for release in kb.cuda:
        floor = release.min_driver_windows if os_name == "windows" else release.min_driver_linux
        floor_v = parse_version(floor) if floor else None
        release_v = parse_version(release.version)
        if floor_v is None or release_v is None or floor_v > version:
            continue
        if best is None or release_v > best:
            best = release_v
    return str(best) if best is not None else None
