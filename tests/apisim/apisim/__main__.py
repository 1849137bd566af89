"""CLI: python3 -m apisim --kubeconfig-out PATH [--scenario NAME|FILE] [--port 0] ..."""

import argparse
import os
import signal
import sys
import tempfile
import threading


def main(argv=None):
    p = argparse.ArgumentParser(prog="apisim", description="Kubernetes API server simulator")
    p.add_argument("--scenario", default=None, help="scenario name (seed, gen:...) or YAML file")
    p.add_argument("--kubeconfig-out", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--profile", choices=["modern", "legacy"], default=None,
                   help="modern (>= 1.24, default) or legacy (< 1.24 token Secrets); given explicitly it wins over "
                        "the scenario's profile")
    p.add_argument("--kubelet-delay", type=float, default=1.0)
    p.add_argument("--sa-key-type", choices=["rsa", "ec"], default="rsa")
    p.add_argument("--workdir", default=None)
    p.add_argument("--log-requests", action="store_true")
    p.add_argument("--bookmark-interval", type=float,
                   default=float(os.environ.get("APISIM_BOOKMARK_INTERVAL", "60")))
    p.add_argument("--history-size", type=int, default=int(os.environ.get("APISIM_HISTORY_SIZE", "10000")))
    p.add_argument("--compaction-interval", type=float,
                   default=float(os.environ.get("APISIM_COMPACTION_INTERVAL", "300")))
    p.add_argument("--no-controllers", action="store_true", help="do not start the simulated controllers")
    args = p.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="apisim-")
    from .server import Sim
    sim = Sim(workdir, sa_key_type=args.sa_key_type, history_size=args.history_size,
              bookmark_interval=args.bookmark_interval, compaction_interval=args.compaction_interval,
              log_requests=args.log_requests, profile=args.profile or "modern", kubelet_delay=args.kubelet_delay)
    sim.profile_from_cli = args.profile is not None
    controllers = None
    if not args.no_controllers:
        try:
            from . import controllers as ctrlmod
        except ImportError:
            ctrlmod = None
        if ctrlmod is not None and hasattr(ctrlmod, "Controllers"):
            controllers = ctrlmod.Controllers(sim)
            sim.controllers = controllers
    if args.scenario:
        from . import scenario as scenmod
        scenmod.load_scenario(sim, args.scenario)
    if controllers is not None:
        controllers.start()
    sim.start_server(args.port)
    sim.write_kubeconfig(args.kubeconfig_out)

    done = threading.Event()

    def on_signal(_signum, _frame):
        done.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.stdout.write("READY %s\n" % sim.url)
    sys.stdout.flush()
    while not done.wait(0.5):
        pass
    try:
        sim.shutdown()
    finally:
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
