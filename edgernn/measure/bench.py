"""bench: export every variant of one model, measure each on a target, judge it against fp32
PyTorch. ``ModelBench`` walks the data path for one model:

    load model + data -> export (or reuse the manifest) -> plan (artifact, sub-variant)
    -> reuse stored rows -> PyTorch baseline (+ int8 peer) on this host
    -> trial 1 of every variant on the target -> (``bench_models``: the same for the next
    model) -> trials 2..N round-robin over every variant of every model -> rows

Every row is stored and handed on the moment it exists (``emit``), so an error later loses
nothing; a row waiting for more trials is provisional and rewritten when they are in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgernn.convert.artifact import Artifact
from edgernn.convert.calibration import calibration_inputs
from edgernn.convert.exporting import export_model
from edgernn.convert.quantize import NOT_RELEVANT
from edgernn.data.evalfile import check_targets, load_eval
from edgernn.data.onehot import one_hot_to_labels
from edgernn.errors import EdgeRNNError, RunnerError
from edgernn.hashing import array_sha256
from edgernn.measure.baseline import BASELINE, TORCH_INT8, host_version, measure_baseline, torch_peer
from edgernn.measure.inputs import (
    fit_data,
    fp32_judged,
    initial_states,
    judged_output,
    model_job,
    per_step,
    reference_scores,
    score_threshold,
)
from edgernn.measure.pending import Pending, finish_trials, more_trials
from edgernn.measure.plan import bench_plan, check_formats, reuse_manifest, unrolled_skips, vname
from edgernn.measure.rows import base_row, fill_row, judge, set_rtf, target_runtimes, timed_use
from edgernn.measure.settings import BenchSettings, probe_job, settings_key
from edgernn.metrics.user import HostJudge, return_limit_mb
from edgernn.model.loading import LoadedModel, load_model_for_data, sha256_file
from edgernn.probe.runtimes import runtime_package
from edgernn.runners import get_runner
from edgernn.runners.base import runner_class
from edgernn.runners.target import Target

PARITY_SAMPLES = 8  # evaluation samples the export parity check runs on

__all__ = ["BASELINE", "PARITY_SAMPLES", "TORCH_INT8", "BenchSettings", "ModelBench", "bench_model",
           "bench_models", "bench_plan", "check_formats", "judge", "model_classes",
           "target_runtimes", "vname"]


def bench_model(
    model_path: Path, target: Target, data_path: Path, out_dir: Path, settings: BenchSettings,
    on_row: Callable[[dict[str, Any]], None], on_step: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Bench one model; every finished row is stored and handed to ``on_row`` at once."""
    return bench_models([model_path], target, data_path, out_dir, settings, on_row, on_step)


class ModelBench:
    """One model benched on one target: what it loaded and decided up front, and the steps."""

    def __init__(self, model_path: Path, target: Target, data_path: Path, out_dir: Path,
                 settings: BenchSettings, on_row: Callable[[dict[str, Any]], None],
                 runner: SharedRunner, on_step: Callable[[str], None] | None = None):
        self.target, self.settings, self.on_row = target, settings, on_row
        self.step = on_step or (lambda _m: None)
        data = load_eval(data_path)
        self.model, options = load_model_for_data(model_path, data.x, settings.load_options)
        model = self.model
        self.data = data = self.labels(data)
        if options is not settings.load_options:  # the shape came from the data: reload with it
            settings = replace(settings, load_options=options)
            self.settings = settings
        self.data_sha = sha256_file(Path(data_path))
        self.data_name = Path(data_path).name
        self.task = task = model.spec.task or data.task
        default = default_max_drop(model, task, data.y)
        self.default_budget = settings.max_drop is None and default is not None
        if self.default_budget:
            settings = replace(settings, max_drop=default)
            self.settings = settings
        self.x = x = fit_data(model, data)
        if settings.judged_output is None and data.output is not None:
            settings = replace(settings, judged_output=data.output)  # the file says which
            self.settings = settings
        self.output = out = judged_output(model, settings.judged_output)
        steps = per_step(model, data.y, task)
        check_targets(data, model.spec, task, model_classes(model, x, task, steps, out))
        self.threshold_note: str | None
        threshold, self.threshold_note = score_threshold(model, x, task, steps, out)
        self.described = model_job(model, task, threshold, out)
        fp32 = fp32_judged(model, x, data.y, task, out)  # y fits the judged output, or one line
        self.judge: HostJudge | None = None
        if settings.metric_fn is not None:  # the user's metric: judged on this host
            self.judge = HostJudge.bind(settings.metric_fn, data.y, Path(data_path))
            self.judge.check(fp32)  # a bad function is refused before anything is exported
            self.described |= {"return_outputs": True,
                               "return_limit_mb": return_limit_mb(fp32, len(x))}
        self.inits = initial_states(model, Path(data_path), len(x))
        self.out_dir = out_dir
        self.work = out_dir / model.name
        self.work.mkdir(parents=True, exist_ok=True)
        self.files = self.work  # where the export's files are (an earlier export's folder)
        self.export_note: str | None = None
        formats = check_formats(target, settings.formats or target.formats)
        self.skipped_formats = unrolled_skips(formats, settings.formats or [], model)
        self.formats = [f for f in formats if f not in self.skipped_formats]
        self.modes = settings.modes if settings.modes is not None else target.quantize
        self.threads = settings.threads or target.threads
        self.store = settings.store
        self.rows: list[dict[str, Any]] = []
        self.calib, self.calib_source = calibration_inputs(model.spec, settings.calib_path, x,
                                                           settings.calib_samples)
        self.calib_sha = array_sha256(self.calib)
        self.trials = settings.trials
        self.settings_sha = settings_key(settings, target, self.threads, self.calib_sha,
                                         model.sig.to_dict())
        self.data_file = (settings.scratch or self.work) / "probe-data.npz"
        self.reference = self.work / f"reference-{model.sha256[:12]}-{self.data_sha[:12]}.npy"
        self.runner = runner  # the target's, opened on first use and closed by the caller

    def labels(self, data: Any) -> Any:
        """The evaluation data with one-hot ``y`` read as class ids, said in every row and at
        once on the status line."""
        data, self.label_note = one_hot_to_labels(data, self.model.spec.task
                                                  or self.settings.load_options.get("task"))
        if self.label_note:
            self.step(f"{self.model.name}: {self.label_note}")
        return data

    # -- the store ------------------------------------------------------------------------------
    def cached(self, variant: str, statuses: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        """The stored row of ``variant`` measured with these exact settings, if any."""
        if self.store is None or self.settings.force:
            return None
        hit = self.store.find(self.model.sha256, f"{self.model.name}/{variant}",
                              self.row_target(variant), self.data_sha, self.threads,
                              self.settings_sha, statuses)
        if hit:
            hit["reused"] = True
        return hit

    def row_target(self, variant: str) -> str:
        """PyTorch runs on this host; it is the target itself only for a local target."""
        on_host = variant in (BASELINE, TORCH_INT8)
        return self.target.name if not on_host or runner_class(self.target.runner).ON_HOST else "host"

    def emit(self, row: dict[str, Any]) -> int | None:
        """Store and hand on a row as soon as it is measured (an error later loses nothing);
        a row waiting for more timing trials is provisional and never reused from the store.
        Returns the row's id in the store, if stored."""
        row.setdefault("data_sha256", self.data_sha)
        row.setdefault("data_name", self.data_name)  # names the group select ranks it in
        row.setdefault("task", self.task)  # what the agreement column means for this row
        if self.judge is not None and not row.get("reused"):  # failed rows say it too
            m = self.judge.metric
            row.update(metric=m.name, higher_is_better=m.higher_is_better, metric_fn=m.source)
        row.setdefault("requested_threads", self.threads)
        for note in (self.label_note, self.threshold_note, self.export_note,
                     *self.settings.row_notes):
            if note and note not in row.get("notes", []) and not row.get("reused"):
                row["notes"] = [*row.get("notes", []), note]
        set_rtf(row, self.settings.step_ms)
        row["settings_sha256"] = None if row.get("provisional") else self.settings_sha
        store = self.store
        rid = store.add(row) if store is not None and not row.get("reused") else None
        self.rows.append(row)
        self.on_row(row)
        return rid

    def update(self, p: Pending, interrupted: bool) -> None:
        """Fold the trials into a provisional row, then rewrite it in the store and files."""
        trials = self.trials
        if interrupted and len(p.latencies) < trials:
            p.failures.append(f"interrupted after {max(1, len(p.latencies))} of {trials} trials")
        finish_trials(p)
        row = p.row
        set_rtf(row, self.settings.step_ms)
        complete = not p.failures and len(p.latencies) == trials
        row.pop("provisional", None)
        row["settings_sha256"] = self.settings_sha if complete else None  # incomplete: not reused
        if self.store is not None and p.store_id is not None:
            self.store.update(p.store_id, row)
        self.on_row(row)

    # -- the steps ------------------------------------------------------------------------------
    def earlier_export(self) -> dict[str, Any] | None:
        """An export of this model already in the bench folder (bench's own, or ``edgernn
        export --out`` to the same folder, a step model's in its ``step`` folder) that covers
        every variant asked, calibrated on the same inputs, its files hash-checked; a bench
        whose accuracy budget is only the default also takes an export made without one."""
        s, model = self.settings, self.model
        budgets = [s.max_drop, *([None] if self.default_budget else [])]
        for folder in dict.fromkeys([self.work, self.out_dir, self.out_dir / "step"]):
            for max_drop in budgets:
                found = reuse_manifest(folder, model, self.formats, self.modes, self.calib_sha,
                                       max_drop, s.opt_in, self.target.seven_bit_weights())
                if found is not None:
                    self.files = folder
                    self.export_note = (f"export taken from {folder / 'manifest.json'}: same "
                                        "model, settings and calibration, files hash-checked "
                                        "(--force converts again)")
                    self.step(f"{model.name}: {self.export_note}")
                    return found
        return None

    def manifest(self) -> dict[str, Any]:
        """The export of every variant: an earlier one when it covers them, else a new one."""
        s, model = self.settings, self.model
        seven_bit = self.target.seven_bit_weights()
        manifest = None if s.force else self.earlier_export()
        if manifest is None:
            manifest = export_model(model, self.work, self.formats, self.modes, self.target.name,
                                    on_step=self.step, calib=self.calib,
                                    calib_source=self.calib_source,
                                    parity_inputs=self.x[:PARITY_SAMPLES],
                                    budget=accuracy_budget(model, self.x, self.data.y, self.task, s,
                                                           self.output, self.judge),
                                    opt_in=s.opt_in, seven_bit_weights=seven_bit,
                                    skip=self.skipped_formats)
        return manifest

    def stored_rows(self, manifest: dict[str, Any],
                    plan: list[tuple[Artifact, str | None]]) -> dict[str, dict[str, Any] | None]:
        """Each planned variant's stored row, if it still counts (same runtime version)."""
        hits = {vname(a, d): self.cached(vname(a, d)) for a, d in plan}
        if manifest.get("reused"):  # the same export failed the same way: its row stands
            hits |= {vname(a, d): self.cached(vname(a, d), (a.status,)) for a, d in plan
                     if a.status not in ("ok", NOT_RELEVANT)}
        if any(h and h.get("runtime_version") for h in hits.values()):
            # a stored row counts only if the target still has the runtime version that made it
            installed = self.settings.installed if self.settings.installed is not None else \
                target_runtimes(self.target)
            if callable(installed):
                installed = installed()
            for variant, hit in hits.items():
                if hit and hit.get("runtime_version") and \
                        installed.get(runtime_package(hit["runtime"])) != hit["runtime_version"]:
                    hits[variant] = None
        return hits

    def host_rows(self, need_reference: bool) -> tuple[dict[str, Any] | None, list[Pending]]:
        """fp32 PyTorch (the baseline and reference outputs, always on this host: devices do
        not run PyTorch) and its int8 peer; returns the baseline row (None unless ok) and the
        rows waiting for more trials."""
        model, x, data_file, reference = self.model, self.x, self.data_file, self.reference
        baseline = self.cached(BASELINE)
        if baseline and baseline.get("runtime_version") != host_version("torch"):
            baseline = None
        pending = None
        if baseline is None or (need_reference and not reference.exists()):
            np.savez(data_file, x=x, y=self.data.y, **self.inits)
            baseline, job = measure_baseline(model, self.target, self.settings, self.threads,
                                             self.described, data_file, reference,
                                             self.row_target(BASELINE), self.step,
                                             judge=self.judge)
            if baseline["status"] == "ok" and self.trials > 1:
                baseline["provisional"] = True
                pending = Pending(baseline, job, {"data": data_file, "model": model.path},
                                  local=True)
        rid = self.emit(baseline)
        if pending is not None:
            pending.store_id = rid
        if baseline["status"] != "ok":
            baseline = None
        if need_reference and reference.exists():
            np.savez(data_file, x=x, y=self.data.y, reference=np.load(reference), **self.inits)
        peer = torch_peer(model, self.target, self.settings, self.threads, self.described,
                          data_file, self.modes, baseline, self.cached, self.emit, self.step,
                          self.row_target(TORCH_INT8), self.judge)
        return baseline, [p for p in (pending, peer) if p is not None]

    def seq_len_refusal(self, art: Artifact) -> str | None:
        """Why a file fixed at one sequence length cannot run the data's sequences, if so."""
        spec = self.model.spec
        seq_axis = spec.seq_axis
        if art.accepts_other_seq_len or seq_axis is None or self.model.sig.is_streaming:
            return None
        data_seq = self.x.shape[_data_axis(seq_axis, spec.batch_axis)]
        if data_seq == spec.shape[seq_axis]:
            return None
        return f"artifact is fixed at sequence length {spec.shape[seq_axis]}; the data has {data_seq}"

    def target_runner(self) -> Any:
        """The target's runner, opened on first use (``bench_models`` shares and closes it)."""
        return self.runner.open()

    def measure(self, art: Artifact, sub: str | None, i: int, n: int,
                baseline: dict[str, Any] | None) -> tuple[dict[str, Any], Pending | None]:
        """Trial 1 of one variant on the target: its row, and a pending record when it waits
        for more trials."""
        model, target = self.model, self.target
        row = base_row(model, art, target, self.task)
        row["variant"] = f"{model.name}/{vname(art, sub)}"
        why = self.seq_len_refusal(art) if art.status == "ok" else None
        if why:
            row.update(status="skipped", reason=why)
        if art.status != "ok" or why:
            return row, None
        self.step(f"{model.name}: [{i + 1}/{n}] measure {vname(art, sub)} on {target.name}"
                  + (f" (trial 1/{self.trials})" if self.trials > 1 else ""))
        job = {**probe_job(self.settings, target, self.threads),
               "runtime": target.runtimes[art.format], "path": "artifact", **self.described,
               **({"delegate": sub} if sub else {})}
        files = {"data": self.data_file, "artifact": self.files / art.path}
        runner = self.target_runner()  # a target that cannot be opened ends the bench (one line)
        try:
            res = timed_use(row, runner, job, files)
            fill_row(row, res)
            if self.judge is not None:
                self.judge.apply(row, res)
        except RunnerError as e:
            row.update(status="run failed", reason=str(e))
        except KeyboardInterrupt:
            row.update(status="run failed", reason="interrupted (Ctrl-C) while measuring")
            self.emit(row)
            raise
        judge(row, baseline, self.settings.collapse)
        if row["status"] in ("ok", "accuracy collapsed") and self.trials > 1:
            row["provisional"] = True
            return row, Pending(row, job, files, local=False)
        return row, None

    def first_trials(self) -> list[Pending]:
        """Export (or reuse), stored rows, the PyTorch baseline and trial 1 of every variant
        on the target, each row emitted as it is made; the rows that wait for more timing
        trials (``bench_models`` runs them). The runner stays open for the caller."""
        manifest = self.manifest()
        plan = bench_plan(manifest, self.target, self.settings)
        hits = self.stored_rows(manifest, plan)
        # a sweep's tasks (``only``) share the reference: make it whenever the file is missing
        need_reference = self.settings.only is not None or any(
            hits[vname(a, d)] is None and a.status == "ok" for a, d in plan)
        baseline, pending = self.host_rows(need_reference)
        try:
            for i, (art, sub) in enumerate(plan):
                hit = hits[vname(art, sub)]
                if hit is not None:
                    self.emit(hit)
                    continue
                row, waiting = self.measure(art, sub, i, len(plan), baseline)
                rid = self.emit(row)
                if waiting is not None:
                    waiting.store_id = rid
                    pending.append(waiting)
        except BaseException:
            self.settle(pending, interrupted=True)
            raise
        return pending

    def settle(self, pending: list[Pending], interrupted: bool) -> None:
        """Fold every pending row's trials into its latency and rewrite it."""
        for p in pending:
            self.update(p, interrupted)


def bench_models(
    model_paths: list[Path], target: Target, data_path: Path, out_dir: Path,
    settings: BenchSettings, on_row: Callable[[dict[str, Any]], None],
    on_step: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Bench several models on one target through one runner: trial 1 of every variant of
    each model in turn, then timing trials 2..N round-robin over the variants of **all** the
    models. A slow spell of a shared machine (seconds long) then costs one trial of several
    models, which the median of trials drops, rather than every trial of one model (which
    made one model of several identical ones 80% slower). An error in one model's first pass
    still completes the trials of the models before it, then ends the bench."""
    step = on_step or (lambda _m: None)
    benches: list[tuple[ModelBench, list[Pending]]] = []
    runner = SharedRunner(target)  # one connection for every model, opened on first use
    failure: Exception | None = None
    try:
        for path in model_paths:
            try:
                b = ModelBench(path, target, data_path, out_dir, settings, on_row, runner,
                               on_step)
                benches.append((b, b.first_trials()))
            except Exception as e:  # a bad model: the others' trials first, then its error
                failure = e
                break
        pending = [p for _, ps in benches for p in ps]
        if pending:
            remote = not all(p.local for p in pending)
            more_trials(pending, benches[0][0].trials, runner.open() if remote else None,
                        target, step)
    except BaseException:  # interrupted: every started row says how many trials it got
        for b, ps in benches:
            b.settle(ps, interrupted=True)
        raise
    finally:
        runner.close()
    for b, ps in benches:
        b.settle(ps, interrupted=False)
    if failure is not None:
        raise failure
    return [r for b, _ in benches for r in b.rows]


class SharedRunner:
    """The target's runner, opened on first use (a target that cannot be opened ends the bench
    only when a variant is measured), shared by every model of one ``bench_models`` call."""

    def __init__(self, target: Target):
        self.target, self.runner = target, None

    def open(self) -> Any:
        if self.runner is None:
            self.runner = get_runner(self.target)
        return self.runner

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None


def model_classes(model: LoadedModel, x: np.ndarray, task: str,
                  steps: int | None = None, output: int | None = None) -> int | None:
    """Classes of a classifier, from one forward pass when its file does not say."""
    if task != "classify" or model.spec.num_classes:
        return None
    try:
        width = reference_scores(model, x, samples=1, steps=steps, output=output).shape[1]
        return 2 if width == 1 else width
    except Exception as e:
        raise EdgeRNNError(f"{model.path}: the model does not run on the evaluation data "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


DEFAULT_MAX_DROP = 0.005  # 0.5 percentage points of accuracy


def default_max_drop(model: LoadedModel, task: str, y: Any) -> float | None:
    """The accuracy budget a bench uses when ``--max-drop`` is not given: 0.5 pp for a
    whole-sequence classifier with labels (int8-mixed is then built whenever all-int8 loses
    more); None otherwise (other metrics have no unit-free default)."""
    if task != "classify" or y is None or model.sig.is_streaming:
        return None
    return DEFAULT_MAX_DROP


def accuracy_budget(model: LoadedModel, x: np.ndarray, y: np.ndarray, task: str,
                    settings: BenchSettings, output: int | None = None,
                    judge: HostJudge | None = None) -> Any:
    """The ``--max-drop`` budget, measured on up to ``calib_samples`` evaluation samples spread
    over the data, with their labels, on the judged output, by the user's metric when given;
    None without ``--max-drop`` or for step models."""
    if settings.max_drop is None or model.sig.is_streaming:
        return None
    from edgernn.convert.quantize.accuracy_budget import AccuracyBudget

    idx = np.unique(np.linspace(0, len(x) - 1, min(len(x), settings.calib_samples)).astype(int))
    return AccuracyBudget(settings.max_drop, x[idx], y[idx], task, model.spec.batch_axis,
                          "evaluation samples", output or 0,
                          judge.take(idx) if judge is not None else None)


def _data_axis(model_axis: int, batch_axis: int) -> int:
    if model_axis == batch_axis:
        return 0
    return model_axis + 1 if model_axis < batch_axis else model_axis
