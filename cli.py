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
    ap.add_argument("--debug", action="store_true", help="show full tracebacks (every script accepts it)")
    ap.add_argument("overrides", nargs="*", help="key=value")
    args = ap.parse_intermixed_args(argv)
    return args


def user_errors():
    """Exception types whose message is meant for the user (printed as one line). The project's
    own errors (ConfigError, InputError, ViewsError, PlyFormatError, MeshFormatError,
    NoSurfaceError subclass ValueError; ModelNotFoundError, OutputError RuntimeError); an
    OSError is about the user's files or machine (a folder where a file was expected, no
    permission, disk full) and its message names the file."""
    from omegaconf.errors import MissingMandatoryValue

    from guidance.base import ModelNotFoundError
    from io_utils import OutputError

    # RuntimeError itself is not here: torch raises it for bugs (shape mismatches), which are
    # internal errors with a traceback in the log; the project's own RuntimeErrors are.
    return (MissingMandatoryValue, OSError, ValueError, FloatingPointError, ModelNotFoundError, OutputError)


_LOG = {"path": None}  # where an internal error's traceback goes: beside the outputs once known


def set_error_log(path: str | None):
    """Tell the last line of defence (``guarded``) where this run's outputs are: an unexpected
    error's traceback is written to ``path``."""
    _LOG["path"] = path


def _write_traceback(script: str) -> str | None:
    import tempfile
    import time
    import traceback

    text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n{traceback.format_exc()}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in (_LOG["path"], os.path.join(tempfile.gettempdir(), f"dreamgaussian_{script}_{stamp}_{os.getpid()}.log")):
        if not path:
            continue
        try:
            with open(path, "a") as fh:
                fh.write(text + "\n")
            return path
        except OSError:
            continue
    return None


def guarded(main) -> int:
    """Every entry point's last line of defence: runs ``main()`` (which reads ``sys.argv``) and
    turns whatever escapes it into one line on stderr and an exit code. A user error (see
    ``user_errors``) prints ``error: <message>``; anything else prints ``error: internal error:
    ...; rerun with --debug, or see LOG`` and writes its traceback to LOG (beside the outputs where
    the script said where they are, else the system temp folder). ``--debug`` (accepted by every
    script, removed from the arguments the script sees) shows full tracebacks instead. Ctrl-C is
    exit code 130 with one line."""
    script = os.path.splitext(os.path.basename(sys.argv[0] or "script"))[0]
    debug = "--debug" in sys.argv[1:] or os.environ.get("DG_DEBUG") == "1"  # a batch's --debug reaches its jobs
    sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != "--debug"]
    if debug:
        os.environ["DG_DEBUG"] = "1"
    try:
        code = main()
        return 0 if code is None else code
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        if isinstance(e, user_errors()):
            print(error_line(e), file=sys.stderr)
            return 2
        log = _write_traceback(script)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        where = f"see {log}" if log else "no log could be written"
        print(f"error: internal error: {type(e).__name__}{': ' + first if first else ''}; rerun with --debug, "
              f"or {where}", file=sys.stderr)
        return 1


def _number(kind, lo, lo_open=False, hi=None, hi_open=False):
    """An argparse ``type=`` that refuses values out of range with argparse's own one-line usage error."""
    import argparse

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if v != v or (v <= lo if lo_open else v < lo) or (hi is not None and (v >= hi if hi_open else v > hi)):
            span = f"{'above' if lo_open else 'at least'} {lo}" + (f" and {'below' if hi_open else 'at most'} {hi}"
                                                                  if hi is not None else "")
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return v
    parse.__name__ = "count" if kind is int else "number"
    return parse


COUNT_ARG = _number(int, 1)  # argparse type: a whole number >= 1
NONNEG_INT_ARG = _number(int, 0)
NONNEG_ARG = _number(float, 0)
POSITIVE_ARG = _number(float, 0, lo_open=True)
ELEVATION_ARG = _number(float, -90, hi=90)
FOVY_ARG = _number(float, 0, True, 180, True)
PORT_ARG = _number(int, 0, hi=65535)


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
        set_error_log(os.path.join(cfg.outdir, str(cfg.save_path)) + "_error.log")  # temp folder if not writable
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
    finally:  # errors: one line each, by guarded()
        signal.signal(signal.SIGTERM, previous)
