"""scripts/batch.py: inputs (folder, glob, manifest), the local backend and Ray on a local
instance started here (2 CPUs, no GPU), on small reconstruction inputs from the mesh corpus."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import batches
from helpers import free_port
from io_utils import load_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "data", "meshes")

SMALL = ["iters=10", "iters_refine=2", "recon_num_views=4", "ref_size=48", "num_pts=300", "mc_resolution=32",
         "mc_num_blocks=2", "texture_size=64", "bake_resolution=48", "bake_num_azimuth=2", "bake_elevations=[0]",
         "decimate_target=2000", "density_thresh=0.2", "device=cpu", "rasterizer=torch", "mesh_renderer=torch"]
RECON = os.path.join(ROOT, "configs", "recon.yaml")
# Ray on loopback only (its switch for that), no token auth between the test's own processes, no usage report
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "RAY_AUTH_MODE": "disabled"}


def run_batch(*args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "batch.py"), "--config", RECON, "--quiet",
                           *args, *SMALL], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


def make_inputs(folder, names=("ico4uv", "rabbit"), bad=True):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        for ext in (".obj", ".mtl"):
            shutil.copy(os.path.join(CORPUS, n + ext), folder)
    if bad:  # points only: stage 1 fails with a one-line error, every attempt
        shutil.copy(os.path.join(CORPUS, "obj_points.obj"), folder)
    return folder


def summary(outdir):
    with open(os.path.join(outdir, "batch_summary.json")) as fh:
        return {j["name"]: j for j in json.load(fh)["jobs"]}


def outputs(outdir):
    return sorted(n for n in os.listdir(outdir) if not n.endswith((".log", "batch_summary.json")) and n != ".partial")


# ------------------------------------------------------------------ inputs
def test_manifests_txt_csv_prompts_and_globs(tmp_path):
    d = make_inputs(tmp_path / "in", bad=False)
    (d / "with space.obj").write_text(Path(os.path.join(CORPUS, "cube.OBJ")).read_text())
    (tmp_path / "list.txt").write_text("# recon inputs\nin/ico4uv.obj elevation=-10\n\"in/with space.obj\" save_path=cube\n")
    jobs = batches.discover(str(tmp_path / "list.txt"), "recon")
    assert [(j["name"], os.path.basename(j["input"]), j["overrides"]) for j in jobs] == [
        ("ico4uv", "ico4uv.obj", ["elevation=-10"]), ("cube", "with space.obj", [])]
    (tmp_path / "list.csv").write_text("input,override\nin/rabbit.obj,iters=5\n")
    assert [(j["name"], j["overrides"]) for j in batches.discover(str(tmp_path / "list.csv"), "recon")] == [
        ("rabbit", ["iters=5"])]
    (tmp_path / "prompts.txt").write_text("a photo of an icecream\n\"a ghost, white\" elevation=0\n")
    jobs = batches.discover(str(tmp_path / "prompts.txt"), "text")
    assert [(j["name"], j["input"], j["overrides"]) for j in jobs] == [
        ("a_photo_of_an_icecream", "a photo of an icecream", []), ("a_ghost_white", "a ghost, white", ["elevation=0"])]
    assert [j["name"] for j in batches.discover(str(d / "*.obj"), "recon")] == ["ico4uv", "rabbit", "with space"]
    assert [j["name"] for j in batches.discover(str(d), "recon")] == ["ico4uv", "rabbit", "with space"]
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(os.path.join(ROOT, "data", "ghost_rgba.png"), imgs)
    assert [j["name"] for j in batches.discover(str(imgs), "image")] == ["ghost"]


@pytest.mark.parametrize("manifest,words", [
    ("in/ico4uv.obj\nin/ico4uv.obj\n", "share the output name 'ico4uv'"),
    ("in/nope.obj\n", "input not found"),
    ("in/ico4uv.obj iterz=5\n", "unknown config key 'iterz'"),
    ("in/ico4uv.obj iters=abc\n", "must be an int"),
])
def test_bad_batch_input_is_one_line_before_any_job(tmp_path, manifest, words):
    make_inputs(tmp_path / "in", bad=False)
    (tmp_path / "list.txt").write_text(manifest)
    out = tmp_path / "out"
    r = run_batch("--inputs", str(tmp_path / "list.txt"), "--outdir", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    assert not out.exists()


def test_missing_ray_is_a_one_line_error(tmp_path):
    fake = tmp_path / "fake" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    make_inputs(tmp_path / "in", names=("ico4uv",), bad=False)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "batch.py"), "--config", RECON, "--inputs",
                        str(tmp_path / "in"), "--outdir", str(tmp_path / "out"), "--backend", "ray", "--quiet", *SMALL],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**ENV, "PYTHONPATH": str(tmp_path / "fake")})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "needs the ray package: pip install -r requirements-ray.txt" in r.stderr


@pytest.mark.slow
def test_local_timeout_stops_and_records_a_stuck_job(tmp_path):
    d = make_inputs(tmp_path / "in", names=("ico4uv",), bad=False)
    out = tmp_path / "out"
    t = time.time()
    r = run_batch("--inputs", str(d), "--outdir", str(out), "--timeout", "4", "iters=1000000")
    assert time.time() - t < 60
    assert r.returncode == 1, r.stdout + r.stderr
    job = summary(out)["ico4uv"]
    assert job["status"] == "timeout" and job["attempts"] == 1 and "stopped after 4" in job["error"]
    assert not batches.is_done(str(out), "ico4uv") and outputs(out) == []  # nothing that looks done


# ------------------------------------------------------------------ Ray on a local instance
@pytest.fixture(scope="module")
def ray_head():
    if shutil.which("ray") is None and not os.path.isfile(os.path.join(os.path.dirname(sys.executable), "ray")):
        pytest.skip("Ray is not installed: pip install -r requirements-ray.txt (.ci/run does)")
    exe = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    start = [exe, "start", "--head", "--num-cpus=2", "--num-gpus=0", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}"]
    r = subprocess.run(start, capture_output=True, text=True, timeout=180, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run([exe, "stop", "--force"], capture_output=True, timeout=120, env=ENV)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_ray_runs_every_job_retries_a_failure_and_matches_local(tmp_path, ray_head):
    d = make_inputs(tmp_path / "in")
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    r = run_batch("--inputs", str(d), "--outdir", str(ray_out), "--backend", "ray", "--address", ray_head,
                  "--cpus-per-job", "1", "--retries", "1")
    assert r.returncode == 1, r.stdout + r.stderr  # one input cannot work
    jobs = summary(ray_out)
    assert jobs["ico4uv"]["status"] == jobs["rabbit"]["status"] == "ok"
    bad = jobs["obj_points"]
    assert bad["status"] == "failed" and bad["attempts"] == 2, bad  # retried by Ray, then recorded
    assert "no faces to render" in bad["error"] and "| obj_points | failed |" in r.stdout
    assert batches.is_done(str(ray_out), "ico4uv") and not batches.is_done(str(ray_out), "obj_points")
    assert set(os.listdir(ray_out / ".partial")) == {"obj_points"}  # finished jobs leave no staging
    # the same batch through the local backend writes the same files with the same settings
    r = run_batch("--inputs", str(d), "--outdir", str(local_out), "--retries", "0")
    assert r.returncode == 1 and summary(local_out)["obj_points"]["attempts"] == 1
    assert outputs(ray_out) == outputs(local_out)
    for name in ("ico4uv", "rabbit"):
        a, b = (load_json(o / f"{name}_run.json") for o in (ray_out, local_out))
        for stage in ("stage1", "stage2"):
            ca, cb = a[stage]["config"], b[stage]["config"]
            ca.pop("outdir"), cb.pop("outdir")
            assert ca == cb and a[stage]["steps"] == b[stage]["steps"]
        assert a["stage2"]["outputs"]["mesh"] == str(ray_out / f"{name}.obj")  # paths point at outdir, not staging


@pytest.mark.slow
def test_a_killed_ray_run_resumes_without_redoing_finished_inputs(tmp_path, ray_head):
    d = make_inputs(tmp_path / "in", bad=False)
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "batch.py"), "--config", RECON, "--quiet", "--inputs", str(d),
           "--outdir", str(out), "--backend", "ray", "--address", ray_head, "--cpus-per-job", "2", *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=ROOT,
                            start_new_session=True)
    deadline = time.time() + 300
    while not any(batches.is_done(str(out), n) for n in ("ico4uv", "rabbit")):  # one at a time: 2 CPUs per job
        assert proc.poll() is None and time.time() < deadline, "the batch ended before a job finished"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    first = next(n for n in ("ico4uv", "rabbit") if batches.is_done(str(out), n))
    second = ({"ico4uv", "rabbit"} - {first}).pop()
    stamp = os.path.getmtime(out / f"{first}_run.json")
    assert not batches.is_done(str(out), second)  # the interrupted job looks unfinished
    time.sleep(3)  # the orphaned stage notices its runner is gone (cli.exit_with_parent) and stops
    r = run_batch("--inputs", str(d), "--outdir", str(out), "--backend", "ray", "--address", ray_head)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = summary(out)
    assert jobs[first]["status"] == "skipped" and jobs[second]["status"] == "ok"
    assert os.path.getmtime(out / f"{first}_run.json") == stamp  # not redone


@pytest.mark.slow
def test_local_jobs_share_the_cores(tmp_path, monkeypatch):
    """--jobs 2: each job's torch gets half the cores (at least one), never all of them each."""
    d = make_inputs(tmp_path / "in", bad=False)
    out = tmp_path / "out"
    env = {k: v for k, v in ENV.items() if k not in batches.THREAD_VARS}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "batch.py"), "--config", RECON, "--quiet",
                        "--inputs", str(d), "--outdir", str(out), "--jobs", "2", *SMALL], capture_output=True,
                       text=True, timeout=600, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    share = max(1, (os.cpu_count() or 1) // 2)
    assert load_json(out / "batch_summary.json")["threads_per_job"] == share
    for name in ("ico4uv", "rabbit"):
        run = load_json(out / f"{name}_run.json")
        assert run["stage1"]["torch_threads"] == run["stage2"]["torch_threads"] == share
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert batches.thread_share(1) == (os.cpu_count() or 1) and batches.thread_share(64) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert batches.thread_share(2) is None  # the user's own setting is kept
