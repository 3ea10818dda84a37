"""Command-line handling shared by main.py and main2.py: config + overrides, one-line errors."""
from __future__ import annotations

import argparse
import os
import sys


def parse(argv, description):
    ap = argparse.ArgumentParser(description=description,
                                 epilog="Any config key can be overridden as key=value, e.g. iters=300 save_path=cat")
    ap.add_argument("--config", required=True, help="YAML config (configs/image.yaml, text.yaml, recon.yaml, ...)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars (batch logs)")
    ap.add_argument("--debug", action="store_true", help="show full tracebacks")
    ap.add_argument("overrides", nargs="*", help="key=value")
    args = ap.parse_intermixed_args(argv)
    return args


def user_errors():
    """Exception types whose message is meant for the user (printed as one line). The project's
    own errors (ConfigError, InputError, ViewsError, PlyFormatError, MeshFormatError,
    NoSurfaceError, ModelNotFoundError) subclass ValueError or RuntimeError."""
    from omegaconf.errors import MissingMandatoryValue

    return (MissingMandatoryValue, FileNotFoundError, ValueError, FloatingPointError, RuntimeError)


def error_line(e: BaseException) -> str:
    """A user error as the one line every entry point prints: ``error: <first line>``."""
    text = str(e).strip()
    return f"error: {text.splitlines()[0] if text else type(e).__name__}"


def exit_with_parent(poll: float = 1.0):
    """A batch job's stage ends (as on SIGTERM: outputs saved) when the runner that started it
    dies, e.g. a killed batch or a lost Ray worker, instead of running on as an orphan."""
    import signal
    import threading
    import time

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return
    threading.Thread(target=watch, daemon=True).start()


def run_stage(stage: int, argv=None) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    args = parse(sys.argv[1:] if argv is None else argv,
                 "DreamGaussian stage 1: Gaussians + coarse mesh" if stage == 1 else
                 "DreamGaussian stage 2: texture refinement")
    import signal

    def terminate(signum, frame):  # SIGTERM (a batch scheduler, `kill`) ends a run like Ctrl-C: outputs saved
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, terminate)
    if os.environ.get("DG_EXIT_WITH_PARENT"):
        exit_with_parent()
    try:
        from config import load_config
        from trainer import Stage1, Stage2

        overrides = list(args.overrides) + (["quiet=true"] if args.quiet else [])
        cfg = load_config(args.config, overrides)
        from omegaconf import OmegaConf

        if OmegaConf.is_missing(cfg, "save_path") or not cfg.save_path:
            raise ValueError("save_path is required: add save_path=NAME")
        view = None
        if cfg.gui:  # first, so that a taken port fails before any work; the stage calls it after each step
            from viewer import LiveView

            view = LiveView(cfg.gui_host, cfg.gui_port, cfg.gui_max_resolution, cfg.gui_render_budget)
        try:
            trainer = (Stage1 if stage == 1 else Stage2)(cfg)
            trainer.hook = view
            record = trainer.run()
        finally:
            if view is not None:
                view.close()
        print(f"stage {stage} done: {', '.join(f'{k}: {v}' for k, v in record['outputs'].items())}")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug or not isinstance(e, user_errors()):
            raise
        print(error_line(e), file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
