"""The browser views in a real browser: headless Chromium (Debian's chromium + chromium-driver,
which .ci/run installs) through Selenium. Each test starts the server as a user would, loads the
page, waits for the first frame, takes a screenshot (saved under the test's tmp folder, to be
looked at) and clicks a control whose effect the server reports."""
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import free_port
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPOT = os.path.join(ROOT, "data", "spot", "spot_triangulated.obj")
BOX = os.path.join(ROOT, "tests", "data", "meshes", "BoxTextured.glb")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -r requirements.txt")
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    if driver_path is None or shutil.which("chromium") is None:
        pytest.skip("headless Chromium missing: apt-get install chromium chromium-driver (.ci/run does)")
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,700",
              "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):  # WebGL in software
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield d
    d.quit()


def wait_for(predicate, seconds, what):
    end = time.time() + seconds
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def screenshot(driver, path) -> np.ndarray:
    driver.save_screenshot(str(path))
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def object_fraction(img: np.ndarray) -> float:
    """Share of the scene's centre (away from the panels) that differs from the background."""
    h, w = img.shape[:2]
    centre = img[h // 4: 3 * h // 4, w // 4: 2 * w // 3]
    bg = np.median(img[h - 60: h - 20, w // 3: 2 * w // 3].reshape(-1, 3), axis=0)  # a strip at the bottom
    return float((np.abs(centre - bg).max(-1) > 0.1).mean())


def button(driver, label):
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.XPATH, f"//button[contains(., '{label}')]")
    return found[0] if found and found[0].is_displayed() else None


class Server:
    """A command that serves a page; its output is collected line by line."""

    def __init__(self, args):
        self.proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        self.lines = []
        import threading

        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def saw(self, text):
        return any(text in ln for ln in self.lines)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.returncode


@pytest.mark.slow
def test_empty_scene_reference(browser, tmp_path):
    """What a viser page with nothing in it looks like: the baseline the other screenshots beat."""
    viser = pytest.importorskip("viser")
    port = free_port()
    s = viser.ViserServer("127.0.0.1", port, verbose=False)
    try:
        browser.get(f"http://127.0.0.1:{port}")
        wait_for(lambda: len(s.get_clients()) > 0, 60, "the page to connect")
        time.sleep(2)
        assert object_fraction(screenshot(browser, tmp_path / "empty.png")) < 0.01
    finally:
        s.stop()


@pytest.mark.slow
def test_output_viewer_shows_splats_and_meshes_and_its_checkbox_reaches_the_server(browser, tmp_path):
    from gaussians import sphere_of_gaussians

    sphere_of_gaussians(3000, radius=0.5, scale=0.03).save_ply(str(tmp_path / "s.ply"))
    port = free_port()
    srv = Server(["scripts/show.py", str(tmp_path / "s.ply"), SPOT, BOX, "--port", str(port)])
    try:
        wait_for(lambda: srv.saw("viewer: http://"), 120, "the viewer to start")
        browser.get(f"http://127.0.0.1:{port}")
        from selenium.webdriver.common.by import By

        wait_for(lambda: browser.find_elements(By.XPATH, "//label[contains(., 'BoxTextured.glb')]"), 60, "the panel")
        time.sleep(4)  # the meshes and splats arrive and draw
        shown = screenshot(browser, tmp_path / "viewer.png")
        assert object_fraction(shown) > 0.03, object_fraction(shown)
        for label in ("s.ply", "spot_triangulated.obj", "BoxTextured.glb"):  # hide all three, one click each
            row = browser.find_element(By.XPATH, f"//label[contains(., '{label}')]/ancestor::div[.//input][1]")
            row.find_element(By.XPATH, ".//input[@type='checkbox']").click()
            wait_for(lambda: srv.saw(f"viewer: hide {label}"), 30, f"the server to hide {label}")
        time.sleep(2)
        hidden = screenshot(browser, tmp_path / "viewer_hidden.png")
        assert object_fraction(hidden) < 0.01, object_fraction(hidden)
    finally:
        srv.stop()


def test_unique_labels_tell_repeated_names_apart():
    from viewer import unique_labels

    assert unique_labels(["/r/a/model.ply", "/r/b/model.ply"]) == ["a/model.ply", "b/model.ply"]
    assert unique_labels(["/x/a/m.ply", "/y/a/m.ply", "/y/b.obj"]) == ["x/a/m.ply", "y/a/m.ply", "b.obj"]
    assert unique_labels(["/r/a/m.ply", "/r/a/m.ply"]) == ["m.ply", "m.ply (2)"]
    assert unique_labels(["/r/a/m.ply", "/r/b/m.ply", "/r/a/m.ply"]) == ["a/m.ply", "b/m.ply", "a/m.ply (2)"]


@pytest.mark.slow
def test_output_viewer_shows_every_path_when_file_names_repeat(browser, tmp_path):
    """Two runs side by side whose files share names, and one file given twice: every path is a
    scene node of its own with its own label and checkbox."""
    from gaussians import sphere_of_gaussians
    from selenium.webdriver.common.by import By

    for run, r in (("a", 0.3), ("b", 0.5)):
        os.makedirs(tmp_path / run)
        sphere_of_gaussians(2000, radius=r, scale=0.03, seed=len(run)).save_ply(str(tmp_path / run / "model.ply"))
    a, b = str(tmp_path / "a" / "model.ply"), str(tmp_path / "b" / "model.ply")
    port = free_port()
    srv = Server(["scripts/show.py", a, b, a, "--port", str(port)])
    try:
        wait_for(lambda: srv.saw("viewer: http://"), 120, "the viewer to start")
        assert srv.saw("(3 items)")
        browser.get(f"http://127.0.0.1:{port}")
        labels = ("a/model.ply", "b/model.ply", "a/model.ply (2)")
        wait_for(lambda: all(browser.find_elements(By.XPATH, f"//label[normalize-space(.)='{lab}']")
                             for lab in labels), 60, "three labelled checkboxes")
        time.sleep(4)
        assert object_fraction(screenshot(browser, tmp_path / "repeated.png")) > 0.02
        for label in labels:  # each checkbox reaches its own node: hiding all three leaves nothing
            row = browser.find_element(By.XPATH, f"//label[normalize-space(.)='{label}']/ancestor::div[.//input][1]")
            row.find_element(By.XPATH, ".//input[@type='checkbox']").click()
            wait_for(lambda: srv.saw(f"viewer: hide {label}"), 30, f"the server to hide {label}")
        time.sleep(2)
        assert object_fraction(screenshot(browser, tmp_path / "repeated_hidden.png")) < 0.01
    finally:
        srv.stop()


def test_view_script_bad_input_is_one_line(tmp_path):
    (tmp_path / "x.obj").write_text("v 0 0 0\n")
    r = subprocess.run([sys.executable, "scripts/show.py", str(tmp_path / "x.obj"), "--port", str(free_port())],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "no faces" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_live_view_renders_training_and_its_buttons_act(browser, tmp_path):
    port = free_port()
    out = tmp_path / "out"
    srv = Server(["main.py", "--config", "configs/recon.yaml", f"input={SPOT}", "save_path=live", f"outdir={out}",
                  "gui=true", f"gui_port={port}", "iters=100000", "recon_num_views=8", "ref_size=64", "--quiet",
                  "gui_max_resolution=256", "gui_host=127.0.0.1", "gui_render_budget=0.2"])
    try:
        wait_for(lambda: srv.saw("live view: http://"), 120, "the live view to start")
        browser.get(f"http://127.0.0.1:{port}")
        wait_for(lambda: "/ 100000" in browser.page_source, 120, "the first frame (the panel's step count)")
        time.sleep(3)
        live = screenshot(browser, tmp_path / "live.png")
        assert object_fraction(live) > 0.01, object_fraction(live)
        button(browser, "Pause").click()
        wait_for(lambda: button(browser, "Resume") is not None, 30, "the pause to take effect")
        wait_for(lambda: "(paused)" in browser.page_source, 30, "the panel to say paused")
        button(browser, "Save Gaussians now").click()
        wait_for(lambda: srv.saw("live view: Gaussians saved to"), 60, "the server to save the Gaussians")
        assert (out / "live_model.ply").is_file()
        step = [ln for ln in srv.lines if "Gaussians saved to" in ln][-1].split("at step ")[-1]
        time.sleep(2)  # paused: the step count stands still
        button(browser, "Save Gaussians now").click()
        wait_for(lambda: len([ln for ln in srv.lines if "Gaussians saved to" in ln]) > 1, 60, "a second save")
        assert [ln for ln in srv.lines if "Gaussians saved to" in ln][-1].endswith(f"at step {step}")
        button(browser, "Resume").click()
        wait_for(lambda: button(browser, "Pause") is not None, 30, "the resume")
    finally:
        rc = srv.stop()
    assert rc == 130 and srv.saw("interrupted at step"), srv.lines[-5:]  # SIGTERM: saved, and said so


def test_a_taken_gui_port_is_a_one_line_error_before_any_work(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "main.py", "--config", "configs/recon.yaml", f"input={SPOT}",
                            "save_path=x", f"outdir={tmp_path}", "gui=true", f"gui_port={port}", "gui_host=127.0.0.1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"gui port {port} on 127.0.0.1 is not free" in lines[0], r.stderr
    assert not any(n.endswith((".ply", ".json")) for n in os.listdir(tmp_path))


# ------------------------------------------------------------------ the demo app
SMALL_APP = ["ref_size=64", "resolution_schedule=[32,64]", "resolution_milestones=[0.5]", "num_pts=500",
             "density_start_iter=2", "densification_interval=4", "mc_resolution=32", "mc_num_blocks=4",
             "texture_size=64", "bake_resolution=32", "bake_num_azimuth=2", "bake_elevations=[0]",
             "decimate_target=2000", "refine_resolution=32", "refine_inference_steps=4", "rasterizer=torch",
             "mesh_renderer=torch", "device=cpu", "density_thresh=0.05", "iters=10", "iters_refine=2",
             "density_end_iter=0"]


def start_app(port, *overrides):
    pytest.importorskip("gradio", reason="the demo app needs gradio: pip install -r requirements-app.txt")
    srv = Server(["app.py", "--port", str(port), "--outdir", str(overrides[0]), *overrides[1:]])
    wait_for(lambda: srv.saw("Running on local URL") or srv.proc.poll() is not None, 180, "the app to start")
    assert srv.proc.poll() is None, srv.lines[-10:]
    return srv


@pytest.mark.slow
def test_demo_app_without_a_model_lists_examples_and_says_what_to_download(browser, tmp_path):
    from selenium.webdriver.common.by import By

    port = free_port()
    srv = start_app(port, tmp_path, "guidance_model=/nonexistent/zero123")
    try:
        browser.get(f"http://127.0.0.1:{port}")
        wait_for(lambda: "not on this machine" in browser.page_source, 60, "the model status")
        wait_for(lambda: len([i for i in browser.find_elements(By.TAG_NAME, "img")
                              if "_rgba" in (i.get_attribute("src") or "")]) == 5, 60, "the five examples")
        screenshot(browser, tmp_path / "app_no_model.png")
        assert "hf download ashawkey/zero123-xl-diffusers" in browser.page_source
        assert not browser.find_element(By.CSS_SELECTOR, "#generate").is_enabled()
    finally:
        srv.stop()


@pytest.mark.slow
def test_demo_app_generates_a_model_from_an_example(browser, tmp_path, zero123_path):
    """The whole path through the page, on the tiny Zero123 in the published layout: pick an
    example, generate, and get the .glb, the turntable and the downloads."""
    from selenium.webdriver.common.by import By

    port = free_port()
    srv = start_app(port, tmp_path, f"guidance_model={zero123_path}", *SMALL_APP)
    try:
        browser.get(f"http://127.0.0.1:{port}")
        wait_for(lambda: "found at" in browser.page_source, 60, "the model status")
        ghost = lambda: [i for i in browser.find_elements(By.TAG_NAME, "img")  # noqa: E731
                         if "ghost_rgba" in (i.get_attribute("src") or "")]
        wait_for(ghost, 60, "the examples")
        ghost()[0].click()
        time.sleep(2)
        browser.find_element(By.CSS_SELECTOR, "#generate").click()
        wait_for(lambda: "Done:" in browser.page_source, 600, "the generation to finish")
        time.sleep(2)
        screenshot(browser, tmp_path / "app_done.png")
        made = [n for n in os.listdir(tmp_path) if n.startswith("demo_")]
        assert len(made) == 1
        files = os.listdir(tmp_path / made[0])
        assert any(f.endswith(".glb") for f in files) and any(f.endswith("_turntable.gif") for f in files), files
        assert any(f.endswith("_model.ply") for f in files) and any(f.endswith("_run.json") for f in files)
    finally:
        srv.stop()


@pytest.mark.slow
def test_live_view_hook_in_stage_2_exports_the_mesh_on_request(tmp_path):
    """Without a browser: the hook the stage calls, a button press queued as the browser's would be."""
    pytest.importorskip("viser")
    from config import load_config
    from trainer import Stage1, Stage2
    from viewer import LiveView

    cfg = load_config(os.path.join(ROOT, "configs", "recon.yaml"),
                      [f"input={SPOT}", "save_path=s", f"outdir={tmp_path}", "iters=5", "recon_num_views=2",
                       "ref_size=32", "num_pts=300", "mc_resolution=32", "mc_num_blocks=2", "texture_size=32",
                       "bake_resolution=32", "density_thresh=0.05", "iters_refine=3", "quiet=true"])
    Stage1(cfg, log=lambda *a: None).run()
    said = []
    view = LiveView("127.0.0.1", free_port(), log=said.append)
    try:
        stage = Stage2(cfg, log=lambda *a: None)
        stage.hook = view
        view._request("export")  # what the "Export mesh now" button does
        stage.run()
        assert view.save_button.visible is False  # no Gaussians in stage 2
        assert any("mesh exported to" in m and m.endswith("at step 1") for m in said), said
    finally:
        view.close()
