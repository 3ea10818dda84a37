"""Runs that cannot mix, lose or guess, one test class per kind of failure:

1. outputs that belong together: the lock, stage 2's refusal of a foreign mesh or input, a
   folder in the way;
2. failing while writing: disk full (a small tmpfs where one can be mounted, else a full disk
   simulated at the write), multi-file outputs whole or absent, the Gaussians rescued;
3. every value checked before work starts, naming the key or file;
4. no traceback without --debug, in every command;
5. no silent guesses (alpha, EXIF orientation, long prompts, empty folders, compressed glTF).
"""
import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, cli
from io_utils import load_json

TOY = os.path.join(ROOT, "data", "toy", "toy_100000_rgba.png")
OTHER = os.path.join(ROOT, "data", "ghost_rgba.png")
BOX = os.path.join(ROOT, "tests", "data", "meshes", "BoxTextured.glb")  # Khronos sample, from ../shared/assets
# the shipped toy prior at the smallest settings that still mesh: about 10 s a stage-1 run
TINY = ["iters=4", "num_pts=300", "mc_resolution=32", "mc_num_blocks=2", "texture_size=64", "bake_resolution=32",
        "bake_num_azimuth=2", "bake_elevations=[0]", "bake_top_bottom=false", "decimate_target=2000",
        "density_thresh=0.2", "iters_refine=1", "refine_inference_steps=4", "quiet=true", "device=cpu"]


def toy_cfg(out, *extra, name="x", image=TOY):
    from config import load_config

    return load_config(os.path.join(ROOT, "configs", "toy.yaml"),
                       TINY + [f"input={image}", f"save_path={name}", f"outdir={out}", *extra])


def main_cli(script, out, *extra, name="x", image=TOY, timeout=300):
    return cli(script, "--config", "configs/toy.yaml", *TINY, f"input={image}", f"save_path={name}", f"outdir={out}",
               *extra, timeout=timeout)


def one_error_line(r, pattern=None, code=2):
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines and lines[-1].startswith("error:"), r.stderr[-3000:]
    if pattern:
        assert re.search(pattern, lines[-1]), lines[-1]
    return lines[-1]


def snapshot(folder):
    return {f: Path(os.path.join(folder, f)).read_bytes() for f in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, f))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished stage-1 run of the toy object (module-wide; tests copy it before changing it)."""
    from trainer import Stage1

    out = str(tmp_path_factory.mktemp("finished"))
    Stage1(toy_cfg(out), log=lambda *a: None).run()
    return out


def copy_of(finished, tmp_path):
    out = str(tmp_path / "out")
    shutil.copytree(finished, out)
    return out


# ----------------------------------------------------------------- 1. outputs that belong together
class TestOutputsBelongTogether:
    @pytest.mark.slow
    def test_a_second_run_with_the_same_save_path_refuses_at_start(self, tmp_path):
        first = subprocess.Popen([sys.executable, "main.py", "--config", "configs/toy.yaml", *TINY, "iters=100000",
                                  f"input={TOY}", "save_path=x", f"outdir={tmp_path}"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            lock = tmp_path / "x.lock"
            for _ in range(600):
                if lock.exists() or first.poll() is not None:
                    break
                time.sleep(0.1)
            assert lock.exists(), first.stderr.read() if first.poll() is not None else "no lock"
            t0 = time.time()
            r = main_cli("main.py", tmp_path)
            line = one_error_line(r, r"another run is writing .*x_\*")
            assert f"pid {first.pid}" in line and "save_path=" in line
            r2 = main_cli("main2.py", tmp_path)  # stage 2 on the same name waits for no one either
            one_error_line(r2)
            assert time.time() - t0 < 60
        finally:
            first.terminate()  # SIGTERM: the run saves its Gaussians and lets go of the lock
            first.wait(120)
        assert not (tmp_path / "x.lock").exists()
        assert (tmp_path / "x_model.ply").exists()

    def test_a_dead_runs_lock_is_taken_over(self, tmp_path):
        from trainer import Stage1

        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        import socket

        (tmp_path / "x.lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(),
                                                     "started": "earlier", "command": "main.py"}))
        Stage1(toy_cfg(tmp_path), log=lambda *a: None).run()
        assert not (tmp_path / "x.lock").exists() and (tmp_path / "x_mesh.obj").exists()

    def test_the_run_json_records_what_each_stage_wrote(self, finished, tmp_path):
        from outputs import file_digest
        from trainer import Stage2

        out = copy_of(finished, tmp_path)
        s1 = load_json(os.path.join(out, "x_run.json"))["stage1"]
        assert s1["status"] == "finished" and len(s1["run_id"]) == 12
        assert s1["input"]["sha256"] == file_digest(TOY)  # the image's own bytes
        assert set(s1["files"]) == {"x_model.ply", "x_mesh.obj", "x_mesh.mtl", "x_mesh_albedo.png"}
        for name, digest in s1["files"].items():
            assert file_digest(os.path.join(out, name)) == digest
        Stage2(toy_cfg(out), log=lambda *a: None).run()
        s2 = load_json(os.path.join(out, "x_run.json"))["stage2"]
        assert s2["input_mesh"]["stage1_run_id"] == s1["run_id"] and not s2["input_mesh"]["chosen"]
        assert set(s2["files"]) == {"x.obj", "x.mtl", "x_albedo.png"}

    def test_ctrl_c_during_the_mesh_export_leaves_no_mixture(self, finished, tmp_path, monkeypatch):
        import mesh_utils
        from io_utils import OutputError
        from trainer import Stage1, Stage2

        out = copy_of(finished, tmp_path)
        before = snapshot(out)

        def interrupted(*a, **k):
            raise KeyboardInterrupt
        monkeypatch.setattr(mesh_utils, "gaussians_to_mesh", interrupted)
        with pytest.raises(KeyboardInterrupt):
            Stage1(toy_cfg(out, "seed=1"), log=lambda *a: None).run()
        after = snapshot(out)
        assert after["x_model.ply"] != before["x_model.ply"]  # the new Gaussians are kept ...
        for f in ("x_mesh.obj", "x_mesh.mtl", "x_mesh_albedo.png"):  # ... beside the old, untouched mesh
            assert after[f] == before[f]
        s1 = load_json(os.path.join(out, "x_run.json"))["stage1"]
        assert s1["status"] == "interrupted" and list(s1["files"]) == ["x_model.ply"]
        with pytest.raises(OutputError, match="was interrupted before its mesh was written"):
            Stage2(toy_cfg(out), log=lambda *a: None)
        r = main_cli("main2.py", out)
        one_error_line(r, r"was interrupted .* or pass mesh=\S*x_mesh.obj to refine it anyway")
        assert not os.path.exists(os.path.join(out, "x.obj"))
        # choosing the mesh on purpose still works, and is recorded as chosen
        Stage2(toy_cfg(out, f"mesh={os.path.join(out, 'x_mesh.obj')}"), log=lambda *a: None).run()
        assert load_json(os.path.join(out, "x_run.json"))["stage2"]["input_mesh"]["chosen"] is True

    @pytest.mark.slow
    def test_stage2_refuses_another_input_or_a_changed_mesh(self, finished, tmp_path):
        out = copy_of(finished, tmp_path)
        r = main_cli("main2.py", out, image=OTHER)
        one_error_line(r, r"input=\S*ghost_rgba.png is not the input stage 1 used .*toy_100000_rgba.png")
        with open(os.path.join(out, "x_mesh.obj"), "a") as fh:
            fh.write("# edited\n")
        r = main_cli("main2.py", out)
        one_error_line(r, r"x_mesh.obj is not the mesh the last stage-1 run \(\w+\) wrote")
        assert not os.path.exists(os.path.join(out, "x.obj"))
        os.remove(os.path.join(out, "x_run.json"))
        one_error_line(main_cli("main2.py", out), r"has no record of the stage-1 run")

    @pytest.mark.parametrize("blocked", ["x_mesh.obj", "x_mesh_albedo.png", "x_model.ply", "x_run.json", "x.lock"])
    def test_a_folder_in_the_way_is_found_before_training(self, tmp_path, blocked):
        (tmp_path / blocked).mkdir()
        t0 = time.time()
        r = main_cli("main.py", tmp_path, "iters=100000")
        one_error_line(r, re.escape(blocked) + r".* is a folder")
        assert time.time() - t0 < 60 and sorted(os.listdir(tmp_path)) == [blocked]


# ----------------------------------------------------------------- 2. failing while writing
@contextlib.contextmanager
def small_disk(folder, size_kb, monkeypatch):
    """``folder`` with ``size_kb`` of space: a tmpfs where this machine lets the test mount one
    (CI runs as root), else every write under it fails with ENOSPC once the folder holds more
    than that (injected at io_utils._write, in this process only). Yields whether it is real."""
    os.makedirs(folder, exist_ok=True)
    mounted = shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if not mounted:
        import io_utils

        real = io_utils._write

        def full(tmp, write_fn):
            real(tmp, write_fn)
            if os.path.abspath(tmp).startswith(os.path.abspath(folder)):
                used = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
                if used > size_kb * 1024:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
        monkeypatch.setattr(io_utils, "_write", full)
    try:
        yield bool(mounted)
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)


class TestFailingWhileWriting:
    def run_stage1(self, out, mounted, *extra):
        """Stage 1 as the user runs it where the disk is really small; in this process where the
        full disk is simulated (the simulation lives here)."""
        if mounted:
            return main_cli("main.py", out, *extra)
        from cli import error_line
        from io_utils import OutputError
        from trainer import Stage1

        try:
            Stage1(toy_cfg(out, *extra), log=lambda *a: None).run()
        except OutputError as e:
            return subprocess.CompletedProcess([], 2, "", error_line(e) + "\n")
        return subprocess.CompletedProcess([], 0, "", "")

    @pytest.mark.slow
    def test_disk_full_during_the_mesh_export_publishes_no_part_of_the_mesh(self, tmp_path, monkeypatch):
        out = tmp_path / "disk"
        with small_disk(out, 64, monkeypatch) as mounted:
            r = self.run_stage1(out, mounted)
            line = one_error_line(r, r"cannot write \S*x_mesh\S*: No space left on device")
            names = sorted(os.listdir(out))
            assert "x_model.ply" in names  # the Gaussians were written before the mesh
            assert not [n for n in names if n.startswith("x_mesh") or n.startswith(".tmp_")], names
            s1 = load_json(out / "x_run.json")["stage1"]
            assert s1["status"] == "writing"  # so stage 2 will not take the folder's contents as a run
            assert "saved to" not in line

    @pytest.mark.slow
    def test_the_gaussians_of_a_finished_training_are_never_lost(self, tmp_path, monkeypatch):
        from gaussians import GaussianModel

        out = tmp_path / "disk"
        with small_disk(out, 4, monkeypatch) as mounted:
            (out / "filler").write_bytes(b"\0" * 2048) if not mounted else None
            r = self.run_stage1(out, mounted)
            line = one_error_line(r, r"cannot write .*: No space left on device; the trained Gaussians are saved to ")
            rescued = re.search(r"saved to (\S+) instead \(continue with load=(\S+)\)", line)
            assert rescued and rescued.group(1) == rescued.group(2)
            try:
                g = GaussianModel.load(rescued.group(1))
                assert len(g) > 100
            finally:
                os.remove(rescued.group(1))
            assert not [n for n in os.listdir(out) if n.startswith(".tmp_")]

    def test_an_unwritable_folder_is_found_before_any_work(self, tmp_path):
        """An outdir under a file (not writable even for root, who CI runs as)."""
        (tmp_path / "a_file").write_text("x")
        t0 = time.time()
        r = main_cli("main.py", tmp_path / "a_file" / "out", "iters=100000")
        one_error_line(r, r"output folder .*a_file/out cannot be written \(Not a directory\)")
        assert time.time() - t0 < 60


# ----------------------------------------------------------------- 3. every value checked at start
def transforms_folder(tmp_path, camera_angle_x, same_centre=False):
    folder = tmp_path / "views"
    folder.mkdir()
    img = np.zeros((32, 32, 4), np.uint8)
    img[8:24, 8:24] = 255
    frames = []
    for i in range(3):
        Image.fromarray(img).save(folder / f"{i}.png")
        m = np.eye(4)
        a = 2 * np.pi * i / 3
        m[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        if not same_centre:  # same_centre: a camera turning on one spot (three poses, one centre)
            m[:3, 3] = [2 * np.sin(a), 0, 2 * np.cos(a)]
        frames.append({"file_path": f"{i}.png", "transform_matrix": m.tolist()})
    (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": camera_angle_x, "frames": frames}))
    return folder


def config_file(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CHECKS = {
    "mc_resolution": (["mc_resolution=100", "mc_num_blocks=16"], r"'mc_resolution' must be a multiple of mc_num_blocks"),
    "bake_elevations": (["bake_elevations=[0,95]"], r"'bake_elevations' item 1 \(95\) must be at most 89.9"),
    "density_thresh": (["density_thresh=-1"], r"'density_thresh' must be above 0"),
    "t_min": (["t_min=0.99"], r"'t_min' must be below t_max"),
    "milestones": (["resolution_schedule=[32,64]", "resolution_milestones=[0.5,0.7]"], r"'resolution_milestones' needs"),
    "device": (["device=gpu"], r"'device' must be one of auto, cuda, cpu, mps"),
    "border_ratio": (["border_ratio=1"], r"'border_ratio' must be below 1"),
    "seed": (["seed=-1"], r"'seed' must be at least 0"),
    "empty_outdir": (["outdir="], r"'outdir' in the command line must be a string"),
    "gui_port": (["gui_port=70000"], r"'gui_port' must be at most 65535"),
}


class TestEveryValueCheckedAtStart:
    @pytest.mark.parametrize("case", sorted(CHECKS))
    def test_a_bad_value_names_its_key_before_any_work(self, tmp_path, case):
        over, pattern = CHECKS[case]
        over = [o for o in over]
        t0 = time.time()
        r = cli("main.py", "--config", "configs/toy.yaml", f"input={TOY}", "save_path=x", f"outdir={tmp_path}",
                "iters=100000", *over)
        one_error_line(r, "config key " + pattern)
        assert time.time() - t0 < 60 and os.listdir(tmp_path) == []

    def test_every_key_has_a_rule(self):
        from config import RULES, load_config

        keys = set(load_config(os.path.join(ROOT, "configs", "base.yaml")).keys())
        assert keys == set(RULES), (keys ^ set(RULES))

    @pytest.mark.parametrize("case", ["camera_angle_x_zero", "camera_angle_x_text", "one_camera_centre",
                                      "zero_extent_mesh", "zero_extent_ply"])
    def test_an_input_whose_geometry_divides_by_zero_is_named(self, tmp_path, case):
        if case.startswith("camera_angle_x"):
            source = transforms_folder(tmp_path, 0 if case.endswith("zero") else "wide")
            pattern = r"transforms.json: camera_angle_x must be the horizontal field of view in radians"
        elif case == "one_camera_centre":
            source = transforms_folder(tmp_path, 0.7, same_centre=True)
            pattern = r"transforms.json: every camera sits where the optical axes meet"
        elif case == "zero_extent_mesh":
            source = tmp_path / "point.obj"
            source.write_text("v 0.5 0.5 0.5\nv 0.5 0.5 0.5\nv 0.5 0.5 0.5\nf 1 2 3\n")
            pattern = r"point.obj: zero extent"
        else:
            from helpers import make_gaussians

            g = make_gaussians(10, opacity_range=(0.9, 0.95))
            g.params["means"].data[:] = 0.25
            source = tmp_path / "point.ply"
            g.save_ply(str(source))
            pattern = r"point.ply: zero extent"
        r = cli("main.py", "--config", "configs/recon.yaml", f"input={source}", "save_path=x",
                f"outdir={tmp_path / 'out'}", "recon_num_views=2", "ref_size=32")
        one_error_line(r, pattern)

    @pytest.mark.parametrize("text,pattern", [
        ("- iters: 3\n- seed: 1\n", r"must be a mapping of key: value lines at the top level, not a list"),
        ("_base_: [image.yaml]\n", r"_base_ must be one file name \(e.g. _base_: image.yaml\), got \['image.yaml'\]"),
        ("_base_: image.yaml\niters: 3\n\tseed: 1\n", r"line 3, column 1: a tab character: YAML indents with spaces"),
        ("_base_: image.yaml\niters: [3\n", r"cannot parse config \S+bad.yaml: line \d+, column \d+: "),
        ("_base_: image.yaml\nfoo: 1\n", r"unknown config key 'foo'"),
    ])
    def test_a_config_file_of_the_wrong_shape_is_one_line_with_its_line(self, tmp_path, text, pattern):
        for name in ("base.yaml", "image.yaml"):
            shutil.copy(os.path.join(ROOT, "configs", name), tmp_path / name)
        path = config_file(tmp_path, text)
        r = cli("main.py", "--config", path, f"input={TOY}", "save_path=x", f"outdir={tmp_path / 'out'}")
        one_error_line(r, pattern)


# ----------------------------------------------------------------- 4. no traceback without --debug
def commands():
    """Every program a user or a developer runs: the root's entry points and every file of
    scripts/, benchmarks/, toy/ and docs/ that runs as a program."""
    found = []
    for folder in ("", "scripts", "benchmarks", "toy", "docs"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder) if folder else ROOT)):
            path = os.path.join(folder, name)
            if name.endswith(".py") and 'if __name__ == "__main__":' in Path(ROOT, path).read_text():
                found.append(path)
    return found


SCRIPTS = commands()
# the fast lane runs the fault injection on one command of each folder; the others in the full suite
FAST_SCRIPTS = ("main.py", "scripts/batch.py", "benchmarks/bench_mesh.py", "toy/train_prior.py")


def test_every_command_is_found():
    assert {"main.py", "main2.py", "process.py", "app.py", "scripts/batch.py", "scripts/show.py",
            "benchmarks/bench_mesh.py", "toy/train_prior.py"} <= set(SCRIPTS)
    assert not {"batches.py", "metrics.py", "toy/runs.py", "demo.py"} & set(SCRIPTS)  # libraries run nothing


LOAD_EACH = """
import os, runpy, sys
root, failed = sys.argv[1], []
for script in sys.argv[2:]:
    for name, mod in list(sys.modules.items()):  # what an earlier command imported of the project
        if os.path.abspath(getattr(mod, "__file__", None) or "/").startswith(root + os.sep):
            del sys.modules[name]
    path = os.path.join(root, script)
    sys.path[:] = [os.path.dirname(path)] + [p for p in sys.path[1:] if os.path.abspath(p or ".") != root]
    try:
        names = runpy.run_path(path, run_name="not_main")
        if not (callable(names.get("main")) or "run_stage" in names):
            failed.append(script + ": no main() and no stage")
        if root not in [os.path.abspath(p or ".") for p in sys.path]:  # its lazy imports need the root
            failed.append(script + ": the repository root is not on its path")
    except Exception as e:
        failed.append(f"{script}: {type(e).__name__}: {e}")
print("\\n".join(failed))
"""


def test_every_command_loads_as_python_runs_it_from_anywhere(tmp_path):
    """Each command's module-level code (its imports of the project's modules) runs without starting
    the command, with the path Python gives a script (its own folder first) from another working
    folder: the fast lane's reach into every program."""
    r = subprocess.run([sys.executable, "-c", LOAD_EACH, ROOT, *SCRIPTS], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0 and r.stdout.strip() == "", (r.stdout + r.stderr)[-3000:]


INJECT = """
import argparse, runpy, sys
def boom(*a, **k):
    raise TypeError("injected fault")
argparse.ArgumentParser.parse_args = boom
argparse.ArgumentParser.parse_intermixed_args = boom
argparse.ArgumentParser.parse_known_args = boom
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class TestNoTraceback:
    @pytest.mark.parametrize("script", [s if s in FAST_SCRIPTS else pytest.param(s, marks=pytest.mark.slow)
                                        for s in SCRIPTS])
    def test_an_unexpected_error_is_one_line_and_a_log(self, tmp_path, script):
        """A fault injected where every script starts (its argument parsing) reaches the script's
        last line of defence: one line naming a log file, the traceback in that file; --debug
        shows it instead."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
        run = lambda *extra: subprocess.run([sys.executable, "-c", INJECT, script, *extra], cwd=ROOT, env=env,  # noqa
                                            capture_output=True, text=True, timeout=120)
        r = run()
        line = one_error_line(r, r"^error: internal error: TypeError: injected fault; rerun with --debug, or see ",
                              code=1)
        log = line.rsplit("see ", 1)[1]
        assert os.path.dirname(log) == str(tmp_path) and "Traceback" in Path(log).read_text()
        assert "injected fault" in Path(log).read_text()
        r = run("--debug")
        assert r.returncode != 0 and "Traceback" in r.stderr and "injected fault" in r.stderr

    @pytest.mark.parametrize("kind", ["ZeroDivisionError", "RuntimeError"])  # torch raises RuntimeError for bugs
    @pytest.mark.slow
    def test_main_writes_the_traceback_beside_the_outputs(self, tmp_path, kind):
        r = subprocess.run([sys.executable, "-c", """
import sys, runpy, trainer
def boom(*a, **k):
    raise """ + kind + """("injected")
trainer.Stage1.train = boom
sys.argv = ["main.py"] + sys.argv[1:]
runpy.run_path("main.py", run_name="__main__")
""", "--config", "configs/toy.yaml", *TINY, f"input={TOY}", "save_path=x", f"outdir={tmp_path}"], cwd=ROOT,
            capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        line = one_error_line(r, f"internal error: {kind}: injected; rerun with --debug, or see ", code=1)
        assert line.endswith(str(tmp_path / "x_error.log")) and "Traceback" in Path(tmp_path / "x_error.log").read_text()
        assert not (tmp_path / "x.lock").exists()

    @pytest.mark.parametrize("case", ["input_folder", "load_folder", "mesh_folder", "config_folder", "huge_image",
                                      "turntable_frames", "turntable_out", "process_empty", "process_missing",
                                      "mesh_from_ply_folder", "convert_folder", "eval_folder", "batch_jobs"])
    def test_error_paths_are_one_line(self, tmp_path, case):
        folder = tmp_path / "a_folder"
        folder.mkdir()
        toy = ["--config", "configs/toy.yaml", f"input={TOY}", "save_path=x", f"outdir={tmp_path / 'out'}"]
        if case == "input_folder":
            r, pattern = cli("main.py", *toy, f"input={folder}"), r"is a folder"
        elif case == "load_folder":
            r, pattern = cli("main.py", *toy, f"load={folder}"), r"a_folder"
        elif case == "mesh_folder":
            r, pattern = cli("main2.py", *toy, f"mesh={folder}"), r"a_folder is a folder"
        elif case == "config_folder":
            r, pattern = cli("main.py", "--config", "configs", "save_path=x"), r"configs is a folder"
        elif case == "huge_image":
            big = tmp_path / "big.png"
            Image.new("1", (20000, 20000)).save(big)
            r, pattern = cli("main.py", *toy, f"input={big}"), r"big.png: too large to read safely"
        elif case == "turntable_frames":
            r, pattern = cli("scripts/turntable.py", "x.obj", "--frames", "0"), r"--frames: must be at least 1"
        elif case == "turntable_out":
            r, pattern = cli("scripts/turntable.py", "x.obj", "--out", "x.avi"), r"--out must end in .gif or .mp4"
        elif case == "process_empty":
            r, pattern = cli("process.py", str(folder)), r"no images in"
        elif case == "process_missing":
            r, pattern = cli("process.py", str(folder / "nope.png")), r"not found"
        elif case == "mesh_from_ply_folder":
            r, pattern = cli("scripts/mesh_from_ply.py", str(folder), "--out", str(tmp_path / "m.obj")), r"a_folder"
        elif case == "convert_folder":
            r, pattern = cli("scripts/convert_splat.py", str(folder)), r"a_folder"
        elif case == "eval_folder":
            r, pattern = cli("scripts/eval_recon.py", "--pred", str(folder), "--gt", str(folder)), r"a_folder"
        else:
            r, pattern = cli("scripts/batch.py", "--inputs", str(folder), "--config", "configs/toy.yaml",
                             "--jobs", "0"), r"--jobs: must be at least 1"
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr[-3000:]
        assert "internal error" not in r.stderr, r.stderr[-3000:]
        assert lines and "error" in lines[-1] and re.search(pattern, lines[-1]), r.stderr[-3000:]


# ----------------------------------------------------------------- 5. no silent guesses
def rgba(alpha, size=64):
    img = np.full((size, size, 4), 255, np.uint8)
    img[..., :3] = 200
    img[..., 3] = 0
    img[16:48, 20:44, 3] = alpha
    return img


class TestNoSilentGuesses:
    def context(self, tmp_path, image):
        from trainer import Context

        cfg = toy_cfg(tmp_path / "out", image=str(image))
        logged = []
        return Context(cfg, log=logged.append), logged

    def test_a_fully_opaque_alpha_is_a_warning_with_the_fix(self, tmp_path):
        path = tmp_path / "opaque.png"
        Image.fromarray(np.full((64, 64, 4), 255, np.uint8)).save(path)
        ctx, logged = self.context(tmp_path, path)
        assert any("fully opaque" in w and "process.py" in w for w in ctx.warnings)
        assert any(line.startswith("warning: ") and "fully opaque" in line for line in logged)
        r = cli("process.py", str(path), "--out", str(tmp_path / "p"))
        assert r.returncode == 0 and "warning:" in r.stderr and "fully opaque" in r.stderr

    def test_a_semi_transparent_object_is_judged_by_its_own_alpha(self, tmp_path):
        path = tmp_path / "ghostly.png"
        Image.fromarray(rgba(90)).save(path)  # alpha 0.35 everywhere on the object
        ctx, _ = self.context(tmp_path, path)
        mask = ctx.ref[2]
        assert float(mask.max()) > 0.99 and float((mask > 0.5).float().mean()) > 0.05
        assert any("semi-transparent" in w and "0.35" in w for w in ctx.warnings)
        empty = tmp_path / "empty.png"
        Image.fromarray(rgba(0)).save(empty)
        with pytest.raises(ValueError, match="alpha channel is empty"):
            self.context(tmp_path, empty)

    @pytest.mark.slow
    def test_a_very_large_image_is_one_warning_line_of_ours(self, tmp_path):
        """An image above PIL's safe-read size (89 megapixels; lowered here so that a small file
        crosses it) is read with the project's one-line warning, in the log and run.json, instead
        of PIL's DecompressionBombWarning with its source line."""
        path = tmp_path / "big_rgba.png"
        Image.fromarray(rgba(255, size=400)).save(path)  # 160,000 pixels
        r = subprocess.run([sys.executable, "-c", "import runpy, sys; from PIL import Image; "
                            "Image.MAX_IMAGE_PIXELS = 100_000; sys.argv = sys.argv[1:]; "
                            "runpy.run_path('main.py', run_name='__main__')", "main.py", "--config", "configs/toy.yaml",
                            *TINY, f"input={path}", "save_path=x", f"outdir={tmp_path / 'out'}", "--quiet"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert r.returncode == 0, r.stderr[-2000:]
        assert "DecompressionBombWarning" not in r.stderr and "Image.py" not in r.stderr, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if "megapixels" in ln]
        assert len(lines) == 1 and lines[0].startswith("warning: ") and "400x400" in lines[0], r.stderr
        assert any("400x400" in w for w in load_json(tmp_path / "out" / "x_run.json")["stage1"]["warnings"])

    def test_exif_orientation_is_applied(self, tmp_path):
        from io_utils import load_image

        img = np.zeros((40, 64, 3), np.uint8)
        img[:, :8] = 255  # a white stripe along the stored image's left side
        im = Image.fromarray(img)
        exif = im.getexif()
        exif[0x0112] = 6  # "rotate 90 CW to display"
        path = tmp_path / "rotated.jpg"
        im.save(path, exif=exif, quality=95)
        shown = load_image(str(path))
        assert shown.shape[:2] == (64, 40)  # as viewers show it
        assert shown[:8].mean() > 0.9 and shown[-8:].mean() < 0.1  # the stripe is now along the top

    def test_a_prompt_longer_than_the_encoder_reads_is_a_warning(self, tmp_path, sd_path):
        from trainer import Context

        prompt = "a small red wooden chair with four legs " * 12
        cfg = toy_cfg(tmp_path / "out", "mode=text", f"sd_model={sd_path}", f"prompt={prompt}", "lambda_sd=1",
                      "lambda_zero123=0")
        logged = []
        ctx = Context(cfg, log=logged.append)
        ctx.load_guidance()
        w = [w for w in ctx.warnings if "tokens long" in w]
        assert len(w) == 1 and "reads 77" in w[0] and "is ignored" in w[0], ctx.warnings
        assert any("tokens long" in line for line in logged)

    def test_process_on_an_empty_folder_says_so(self, tmp_path):
        (tmp_path / "notes.txt").write_text("no images here")
        (tmp_path / "x_rgba.png").write_bytes(b"")  # an output of an earlier run, not an input
        r = cli("process.py", str(tmp_path))
        one_error_line(r, r"no images in .* \(looked for .png, .jpg, .jpeg, .webp")

    def test_a_draco_compressed_gltf_is_decoded(self, tmp_path):
        """Written by trimesh's own Draco exporter (DracoPy), read back through the normal path."""
        import trimesh

        from mesh import Mesh

        src = BOX
        data = trimesh.load(src, force="scene").export(file_type="glb", extension_draco=True)
        path = tmp_path / "box_draco.glb"
        path.write_bytes(data)
        assert b"KHR_draco_mesh_compression" in data[:4000]
        plain, draco = Mesh.load(src), Mesh.load(str(path))
        assert draco.v.shape == plain.v.shape and float((draco.v - plain.v).abs().max()) < 1e-3
        assert draco.albedo is not None

    @pytest.mark.parametrize("ext", ["EXT_meshopt_compression", "KHR_texture_basisu"])
    def test_a_gltf_requiring_an_extension_we_cannot_decode_is_one_line(self, tmp_path, ext):
        import struct

        from mesh import Mesh, MeshFormatError

        src = BOX
        data = Path(src).read_bytes()
        n = struct.unpack("<I", data[12:16])[0]
        tree = json.loads(data[20:20 + n])
        tree["extensionsUsed"] = tree["extensionsRequired"] = [ext]
        js = json.dumps(tree).encode()
        js += b" " * (-len(js) % 4)
        rest = data[20 + n:]
        out = data[:4] + struct.pack("<II", 2, 12 + 8 + len(js) + len(rest)) + struct.pack("<I", len(js)) + b"JSON" + js
        path = tmp_path / "needs.glb"
        path.write_bytes(out + rest)
        with pytest.raises(MeshFormatError, match=f"requires the glTF extension {ext}"):
            Mesh.load(str(path))
