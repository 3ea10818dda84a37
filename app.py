"""A demo in the browser (gradio): an image in, a textured 3D model out.

    pip install -r requirements-app.txt
    python app.py [--port 7860] [--host 127.0.0.1] [--config configs/image.yaml] [key=value ...]

Upload an image (or pick an example), optionally remove its background (rembg), set the
elevation it was taken from, and run both stages with a progress bar; the page shows the .glb in
3D, a turntable animation, and offers the files for download. The model is the config's
``guidance_model`` (override it like any key: ``guidance_model=/models/zero123-xl``), or ImageDream
with ``--config configs/imagedream.yaml``; when it is not on this machine, the page says what to
download before anything runs. Where the config's Zero123 is not on this machine and no
``guidance_model=`` was given, the page runs the toy Zero123 trained here instead
(models/toy-zero123 with configs/toy.yaml): Generate works offline on the toy examples, and the
page says what that model is and what to download for real images.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

from demo import EXTRA_VIEWS, choose_model, input_overrides, model_status, prepare_input

ROOT = os.path.dirname(os.path.abspath(__file__))


def make_app(config: str, overrides: list, outdir: str):
    import gradio as gr

    from cli import user_errors
    from config import load_config

    config, overrides, base, ok, status, examples = choose_model(config, overrides)

    def generate(image, remove_bg, elevation, iters, iters_refine, *extra, progress=gr.Progress()):
        """``extra``: EXTRA_VIEWS images (None where not given), then their azimuths."""
        from mesh import Mesh
        from mesh_renderer import turntable
        from trainer import Stage1, Stage2

        if image is None:
            raise gr.Error("Upload an image or pick an example first.")
        ready, message = model_status(base)
        if not ready:
            raise gr.Error(message.replace("**", "").replace("`", "'"))
        name = time.strftime("demo_%Y%m%d_%H%M%S")
        work = os.path.join(outdir, name)
        os.makedirs(work, exist_ok=True)
        try:
            paths, azimuths = [prepare_input(image, remove_bg, work)], [0.0]
            for i, (img, az) in enumerate(zip(extra[:EXTRA_VIEWS], extra[EXTRA_VIEWS:])):
                if img is not None:
                    paths.append(prepare_input(img, remove_bg, work, f"view{i + 1}"))
                    azimuths.append(az)
            cfg = load_config(config, overrides + input_overrides(paths, azimuths) + [
                                                   f"save_path={name}", f"outdir={work}",
                                                   f"elevation={elevation}", f"iters={int(iters)}",
                                                   f"iters_refine={int(iters_refine)}", "mesh_format=glb",
                                                   "quiet=true"])
            s1 = Stage1(cfg, log=lambda *a: None)
            s1.hook = lambda t, st: progress(0.8 * t.step / cfg.iters, desc=f"stage 1: Gaussians, step {t.step}")
            progress(0.0, desc="stage 1: loading the model")
            s1.run()
            s2 = Stage2(cfg, log=lambda *a: None, context=s1.ctx)
            s2.hook = lambda t, st: progress(0.8 + 0.15 * t.step / max(1, cfg.iters_refine),
                                             desc=f"stage 2: texture, step {t.step}")
            s2.run()
            progress(0.96, desc="turntable")
            glb = os.path.join(work, f"{name}.glb")
            frames = turntable(Mesh.load(glb), frames=36, size=256)
            import imageio.v2 as imageio

            gif = os.path.join(work, f"{name}_turntable.gif")
            imageio.mimwrite(gif, list(frames), duration=1000 / 24, loop=0)
        except user_errors() as e:  # the pipeline's one-line errors, shown in the page
            raise gr.Error(str(e).strip().splitlines()[0]) from None
        files = [p for p in sorted(glob.glob(os.path.join(work, f"{name}*"))) if not p.endswith(".tmp")]
        return glb, gif, files, f"Done: `{work}`"

    with gr.Blocks(title="DreamGaussian") as demo:
        gr.Markdown("# DreamGaussian: image to 3D\nGaussians optimised with score distillation from Zero123, "
                    "then a textured mesh refined with SDEdit.")
        gr.Markdown(status, elem_id="model-status")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="input image (RGBA: transparent background)", type="numpy",
                                 image_mode="RGBA", elem_id="input-image")
                remove_bg = gr.Checkbox(label="remove the background (rembg)", value=False)
                elevation = gr.Slider(-80, 80, value=float(base.elevation), step=1,
                                      label="elevation of the input view (degrees; negative: from above)")
                iters = gr.Slider(10, 2000, value=int(base.iters), step=10, label="stage 1 steps")
                iters_refine = gr.Slider(0, 500, value=int(base.iters_refine), step=10, label="stage 2 steps")
                extra_images, extra_azimuths = [], []
                with gr.Accordion("more pictures of the same object (optional)", open=False):
                    gr.Markdown("Each at the azimuth of its camera in degrees from the first picture's "
                                "(90: the side on the right in the first picture; 180: the back).")
                    for i in range(EXTRA_VIEWS):
                        with gr.Row():
                            extra_images.append(gr.Image(label=f"view {i + 2} (RGBA)", type="numpy", image_mode="RGBA",
                                                         elem_id=f"extra-view-{i + 2}"))
                            extra_azimuths.append(gr.Number(value=90.0 * (i + 1), label=f"view {i + 2} azimuth"))
                run = gr.Button("Generate", variant="primary", interactive=ok, elem_id="generate")
                gr.Examples(examples, inputs=[image], label="examples")
            with gr.Column():
                model3d = gr.Model3D(label="textured mesh (.glb)")
                video = gr.Image(label="turntable", type="filepath")
                files = gr.File(label="downloads", file_count="multiple")
                done = gr.Markdown()
        run.click(generate, [image, remove_bg, elevation, iters, iters_refine, *extra_images, *extra_azimuths],
                  [model3d, video, files, done])
    return demo


def main(argv=None):
    from cli import PORT_ARG

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "image.yaml"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=PORT_ARG, default=7860)
    ap.add_argument("--outdir", default=os.path.join(ROOT, "logs", "app"))
    ap.add_argument("overrides", nargs="*", help="key=value, e.g. guidance_model=/models/zero123-xl")
    args = ap.parse_intermixed_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a demo on your machine reports to no one
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the demo app needs gradio: pip install -r requirements-app.txt", file=sys.stderr)
        return 2
    from cli import error_line, user_errors
    from viewer import check_port

    try:
        check_port(args.host, args.port)
        demo = make_app(args.config, list(args.overrides), args.outdir)
    except user_errors() as e:
        print(error_line(e), file=sys.stderr)
        return 2
    print(f"demo: http://{args.host}:{args.port}", flush=True)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=False, show_error=True,
                        allowed_paths=[args.outdir, os.path.join(ROOT, "data")])
    return 0


if __name__ == "__main__":
    from cli import guarded

    sys.exit(guarded(main))
