"""A batch: both stages for many inputs, on this machine or on a Ray cluster (``scripts/batch.py``).

- ``discover``: jobs from a folder, a glob or a manifest (one input per line, then per-line
  overrides); ``prepare`` checks every config and override of a batch before the first job;
- ``run_job``: one input's two stages in ``<outdir>/.partial/<name>/``, moved into ``outdir`` (its
  run.json last) when both succeed, so ``is_done`` tells a finished input from a half one;
- ``run_local`` / ``run_ray``: the backends, with retries, a per-job timeout and ``Progress``;
- ``summarise`` / ``write_summary`` / ``table``: ``<outdir>/batch_summary.json`` and the closing table.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
STAGES = ("main.py", "main2.py")


class BatchError(ValueError):
    """Bad batch input: one line, before any job runs."""


class JobFailed(RuntimeError):
    """A stage exited with an error (retried)."""


class JobTimeout(RuntimeError):
    """A job ran past --timeout and was stopped (not retried)."""


# ------------------------------------------------------------------ inputs
def name_of(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    if base == "transforms.json":
        base = os.path.basename(os.path.dirname(os.path.abspath(path)))
    base = base[:-len("_rgba.png")] if base.endswith("_rgba.png") else os.path.splitext(base)[0]
    return base


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:60] or "prompt"


def folder_inputs(folder: str, mode: str) -> list:
    if mode == "image":
        return sorted(glob.glob(os.path.join(folder, "*_rgba.png")))
    if mode == "recon":
        files = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
        from posed_views import MESH_EXTENSIONS  # what recon mode reads

        return [f for f in files if (os.path.isfile(f) and f.lower().endswith(MESH_EXTENSIONS))
                or os.path.isfile(os.path.join(f, "transforms.json"))]
    raise BatchError("text mode takes a prompts file (one prompt per line), not a folder")


def manifest_lines(path: str) -> list:
    """(input, overrides) per line of a .txt (shell-like words) or .csv manifest."""
    rows = []
    with open(path, newline="") as fh:
        if path.lower().endswith(".csv"):
            for i, row in enumerate(csv.reader(fh)):
                cells = [c.strip() for c in row if c.strip()]
                if not cells or cells[0].startswith("#") or (i == 0 and cells[0].lower() == "input"):
                    continue
                rows.append((cells[0], cells[1:]))
        else:
            for n, line in enumerate(fh, 1):
                try:
                    words = shlex.split(line, comments=True)
                except ValueError as e:
                    raise BatchError(f"{path}: line {n}: {e}") from None
                if not words:
                    continue
                # key=value words are overrides; the others form the input (an unquoted prompt)
                over = [w for w in words if re.match(r"^[A-Za-z_][\w.]*=", w)]
                rest = [w for w in words if w not in over]
                if not rest:
                    raise BatchError(f"{path}: line {n} has overrides but no input")
                rows.append((" ".join(rest), over))
    return rows


def discover(spec: str, mode: str) -> list:
    """Jobs ({"name", "input", "overrides"}) from a folder, a glob or a manifest."""
    jobs = []
    if os.path.isdir(spec):
        jobs = [{"input": os.path.abspath(p), "overrides": []} for p in folder_inputs(spec, mode)]
    elif os.path.isfile(spec) and spec.lower().endswith((".txt", ".csv")):
        base = os.path.dirname(os.path.abspath(spec))
        for inp, over in manifest_lines(spec):
            if mode != "text":
                inp = os.path.normpath(os.path.join(base, inp))
                if not os.path.exists(inp):
                    raise BatchError(f"{spec}: input not found: {inp}")
            jobs.append({"input": inp, "overrides": over})
    elif os.path.isfile(spec) or glob.has_magic(spec):
        if mode == "text":
            raise BatchError("text mode takes a prompts file (.txt or .csv)")
        jobs = [{"input": os.path.abspath(p), "overrides": []} for p in sorted(glob.glob(spec))]
    else:
        raise BatchError(f"inputs not found: {spec}")
    if not jobs:
        what = {"image": "*_rgba.png images", "recon": "meshes or transforms.json folders"}.get(mode, "prompts")
        raise BatchError(f"no inputs in {spec} ({what})")
    for j in jobs:
        named = [o.split("=", 1)[1] for o in j["overrides"] if o.startswith("save_path=")]
        j["overrides"] = [o for o in j["overrides"] if not o.startswith("save_path=")]
        j["name"] = named[-1] if named else (slug(j["input"]) if mode == "text" else name_of(j["input"]))
    seen = {}
    for j in jobs:
        if j["name"] in seen:
            raise BatchError(f"two inputs would share the output name '{j['name']}': {seen[j['name']]} and "
                             f"{j['input']}; set save_path= on one of them in a manifest")
        seen[j["name"]] = j["input"]
    return jobs


def job_args(job: dict, mode: str) -> list:
    return [f"prompt={job['input']}"] if mode == "text" else [f"input={job['input']}"]


# ------------------------------------------------------------------ one job
def run_path(outdir: str, name: str) -> str:
    return os.path.join(outdir, f"{name}_run.json")


def is_done(outdir: str, name: str) -> bool:
    """Stage 2 finished (not interrupted) and its mesh is in ``outdir``."""
    try:
        with open(run_path(outdir, name)) as fh:
            s2 = json.load(fh).get("stage2") or {}
    except (OSError, ValueError):
        return False
    mesh = os.path.join(outdir, os.path.basename(s2.get("outputs", {}).get("mesh", "")))
    return bool(s2) and not s2.get("interrupted") and os.path.isfile(mesh)


def last_error(log_path: str) -> str:
    try:
        with open(log_path, errors="replace") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except OSError:
        return ""
    errs = [ln for ln in lines if ln.startswith("error:")]
    return (errs or lines or [""])[-1][:200]


def _stop(proc, grace: float = 10.0):
    """SIGTERM the job's process group (the stages save what they have), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def publish(staging: str, outdir: str):
    """Move a finished job's files into ``outdir``, run.json last, with its paths rewritten."""
    names = sorted(os.listdir(staging), key=lambda n: n.endswith("_run.json"))
    for n in names:
        src = os.path.join(staging, n)
        if n.endswith("_run.json"):
            with open(src) as fh:
                text = fh.read()
            with open(src, "w") as fh:
                fh.write(text.replace(json.dumps(staging)[1:-1], json.dumps(outdir)[1:-1]))
        os.replace(src, os.path.join(outdir, n))
    shutil.rmtree(staging, ignore_errors=True)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # torch sizes its CPU thread pool from these


def thread_share(jobs_at_once: int) -> int | None:
    """CPU threads for each of ``jobs_at_once`` local jobs: the cores shared out (at least 1), so N
    jobs never run N x cores threads; None where the user set OMP_NUM_THREADS (theirs is kept)."""
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // max(1, jobs_at_once))


def run_job(job: dict, opts: dict) -> dict:
    """Both stages of one input in its staging folder, within ``opts['timeout']`` seconds.
    Returns the job's record; raises JobFailed or JobTimeout (the record rides on the exception)."""
    outdir, name = opts["outdir"], job["name"]
    staging = os.path.join(outdir, ".partial", name)
    os.makedirs(staging, exist_ok=True)
    counter = os.path.join(staging, ".attempts")  # counted here: Ray retries in another process
    attempt = 1
    if os.path.isfile(counter):
        with open(counter) as fh:
            attempt += int(fh.read() or 0)
    with open(counter, "w") as fh:
        fh.write(str(attempt))
    log_path = os.path.join(outdir, f"{name}.log")
    record = {"name": name, "input": job["input"], "status": "running", "seconds": {}, "attempts": attempt,
              "log": log_path, "error": ""}
    common = ["--config", opts["config"], *job_args(job, opts["mode"]), f"save_path={name}", f"outdir={staging}",
              "--quiet", *opts["overrides"], *job["overrides"]]
    t_end = time.time() + opts["timeout"] if opts.get("timeout") else None
    env = dict(os.environ, DG_EXIT_WITH_PARENT="1")  # a stage stops if this runner dies (cli.exit_with_parent)
    if opts.get("gpu") is not None:  # local backend: this slot's GPU (Ray sets CUDA_VISIBLE_DEVICES itself)
        env["CUDA_VISIBLE_DEVICES"] = str(opts["gpu"])
    if opts.get("threads"):  # local backend: this job's share of the cores (Ray sets OMP_NUM_THREADS itself)
        env.update({k: str(opts["threads"]) for k in THREAD_VARS})
    with open(log_path, "a") as log:
        log.write(f"=== {name}: attempt {attempt}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        for script in STAGES:
            t0 = time.time()
            proc = subprocess.Popen([sys.executable, os.path.join(ROOT, script), *common], stdout=log,
                                    stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
            try:
                rc = proc.wait(None if t_end is None else max(0.1, t_end - time.time()))
            except subprocess.TimeoutExpired:
                _stop(proc)
                record.update(status="timeout", error=f"{script}: stopped after {opts['timeout']} s")
                record["seconds"][script] = round(time.time() - t0, 1)
                raise JobTimeout(json.dumps(record)) from None
            record["seconds"][script] = round(time.time() - t0, 1)
            if rc != 0:
                log.flush()
                record.update(status="failed", error=f"{script}: {last_error(log_path)}")
                raise JobFailed(json.dumps(record))
    publish(staging, outdir)
    record["status"] = "ok"
    return record


def record_of(exc: BaseException) -> dict:
    """The record a JobFailed / JobTimeout carries (through Ray's wrapper too), else a crash."""
    cause = getattr(exc, "cause", None) or exc
    try:
        return json.loads(str(cause.args[0]))
    except (ValueError, IndexError, TypeError):
        last = (str(cause).strip().splitlines() or [""])[-1]
        return {"status": "failed", "error": f"{type(cause).__name__}: {last}"[:200]}


# ------------------------------------------------------------------ backends
class Progress:
    """Counts and a live line: done / running / failed / left, throughput and ETA."""

    def __init__(self, total: int, skipped: int, quiet: bool = False):
        self.total, self.skipped, self.quiet = total, skipped, quiet
        self.done = self.failed = self.running = 0
        self.t0 = time.time()
        self.lock = threading.Lock()
        self.tty = sys.stdout.isatty()

    def update(self, running: int, finished: dict | None = None):
        with self.lock:
            self.running = running
            if finished is not None:
                if finished["status"] == "ok":
                    self.done += 1
                else:
                    self.failed += 1
            self.show(finished)

    def line(self) -> str:
        left = self.total - self.skipped - self.done - self.failed - self.running
        mins = (time.time() - self.t0) / 60
        finished = self.done + self.failed
        rate = finished / mins if mins > 0 and finished else 0.0
        eta = f"{(left + self.running) / rate:.1f} min" if rate else "?"
        return (f"[batch] done {self.done} | running {self.running} | failed {self.failed} | left {left} | "
                f"skipped {self.skipped} | {rate:.2f} jobs/min | ETA {eta}")

    def show(self, finished=None):
        if self.quiet:
            return
        if finished is not None and finished["status"] != "ok":
            print(("\n" if self.tty else "") + f"[{finished['status']}] {finished.get('name', '?')}: "
                  f"{finished.get('error', '')} (log: {finished.get('log', '')})", flush=True)
        print(("\r" + self.line()) if self.tty else self.line(), end="" if self.tty else "\n", flush=True)


def with_retries(job, opts):
    """Local backend: the retries Ray would make."""
    for attempt in range(opts["retries"] + 1):
        try:
            return run_job(job, opts)
        except JobFailed as e:
            if attempt == opts["retries"]:
                return record_of(e)
        except JobTimeout as e:
            return record_of(e)


def run_local(jobs, opts, progress, workers):
    """``workers``: one list entry per parallel slot (a GPU id or None)."""
    results, todo, lock = [], list(jobs), threading.Lock()
    running = [0]

    def worker(gpu):
        while True:
            with lock:
                if not todo:
                    return
                job = todo.pop(0)
                running[0] += 1
            progress.update(running[0])
            rec = with_retries(job, dict(opts, gpu=gpu))
            rec.setdefault("name", job["name"])
            with lock:
                results.append(rec)
                running[0] -= 1
            progress.update(running[0], rec)

    threads = [threading.Thread(target=worker, args=(g,)) for g in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def run_ray(jobs, opts, progress, address, cpus, gpus):
    private = address in (None, "", "local")
    if private:  # a private instance on this machine: loopback addresses only, no usage report
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for "bind to 127.0.0.1"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise BatchError("--backend ray needs the ray package: pip install -r requirements-ray.txt") from None
    env = {"PYTHONPATH": ROOT}
    init = dict(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                logging_level="ERROR", configure_logging=True)
    if private:
        init.update(address=None, include_dashboard=False)
    ray.init(**init)
    try:
        task = ray.remote(run_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=opts["retries"],
                                           retry_exceptions=[JobFailed])
        res = ray.cluster_resources()
        slots = min(res.get("CPU", 1) / cpus if cpus else len(jobs), res.get("GPU", 0) / gpus if gpus else len(jobs))
        slots = max(1, int(slots))  # how many run at once, for the progress line
        pending = {task.remote(j, opts): j for j in jobs}
        progress.update(min(slots, len(pending)))
        results = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    rec = ray.get(ref)
                except Exception as e:  # JobFailed after the retries, JobTimeout, a worker lost for good
                    rec = record_of(e)
                    rec.setdefault("log", os.path.join(opts["outdir"], f"{job['name']}.log"))
                rec.setdefault("name", job["name"])
                rec.setdefault("input", job["input"])
                results.append(rec)
                progress.update(min(slots, len(pending)), rec)
        return results
    finally:
        ray.shutdown()


# ------------------------------------------------------------------ a whole batch
def prepare(inputs: str, config: str, outdir: str, overrides: list) -> tuple:
    """(mode, jobs, jobs still to do) of a batch; every config and per-line override is checked
    first (a ConfigError or BatchError, one line, before any job). What an earlier, killed run left
    half done is removed so that it starts again from scratch."""
    from config import load_config

    cfg = load_config(config, list(overrides) + ["save_path=x"])
    jobs = discover(inputs, cfg.mode)
    for j in jobs:
        load_config(config, list(overrides) + j["overrides"] + ["save_path=x"])
    os.makedirs(outdir, exist_ok=True)
    todo = [j for j in jobs if not is_done(outdir, j["name"])]
    for j in todo:
        shutil.rmtree(os.path.join(outdir, ".partial", j["name"]), ignore_errors=True)
    return cfg.mode, jobs, todo


def skipped_record(job: dict) -> dict:
    return {"name": job["name"], "input": job["input"], "status": "skipped", "seconds": {}, "attempts": 0, "error": ""}


def summarise(rows: list, config: str, backend: str, outdir: str, wall: float, threads) -> dict:
    return {"config": config, "backend": backend, "outdir": outdir, "wall_seconds": round(wall, 1),
            "threads_per_job": threads,
            "counts": {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed", "timeout")},
            "jobs": rows}


def write_summary(summary: dict) -> str:
    """``<outdir>/batch_summary.json``, written atomically; returns its path."""
    from io_utils import save_json

    path = os.path.join(summary["outdir"], "batch_summary.json")
    save_json(path, summary)
    return path


def table(rows: list) -> str:
    lines = ["| input | status | stage 1 (s) | stage 2 (s) | attempts | error |", "|---|---|---|---|---|---|"]
    for r in rows:
        s = r.get("seconds", {})
        lines.append(f"| {r['name']} | {r['status']} | {s.get('main.py', '')} | {s.get('main2.py', '')} | "
                     f"{r.get('attempts', '')} | {r.get('error', '')} |")
    return "\n".join(lines)
