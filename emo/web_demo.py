"""``python -m emo.web_demo serve DIR`` (also ``emo-web-demo serve DIR``): the web demo with DIR's artifacts.

Starts the local server (``emo.runtime_bench.webserver``: 127.0.0.1 only, cross-origin isolated so the WASM
runtimes get threads), prints the page's URL and serves until Ctrl-C. DIR is an ``emo-export --out`` folder; its
.onnx/.ort/.tflite artifacts (and those of its subfolders: ``make demo`` puts the trained Fashion-MNIST export in
DIR/fashion_mnist with a few of its test images) appear in the page's model list, the images beside them and the
bundled sample photos under "samples". The printed example URL opens a trained model when there is one.
No torch import: the server only reads files.
"""

from __future__ import annotations

import argparse
import signal
import sys
import urllib.parse
from importlib import resources
from pathlib import Path

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"emo-web-demo: error: {message} (see emo-web-demo --help)\n")


def main(argv: list[str] | None = None) -> int:
    from emo.runtime_bench.webserver import BROWSER_SUFFIXES, DemoServer, WebDemoError, model_index

    p = _Parser(prog="emo-web-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the page with the artifacts of DIR")
    serve.add_argument("dir", help="a folder written by emo-export --out")
    serve.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks a free one)")
    args = p.parse_args(argv)
    models = Path(args.dir)
    if not models.is_dir():
        print(f"emo-web-demo: error: {models} is not a folder; export artifacts with emo-export --out {models}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0 <= args.port <= 65535:
        print(f"emo-web-demo: error: --port {args.port} is out of range (0..65535)", file=sys.stderr)
        return EXIT_BAD_INPUT
    samples = Path(str(resources.files("emo").joinpath("assets/samples")))
    try:
        server = DemoServer(models=models, samples=samples, port=args.port)
    except WebDemoError as e:
        print(f"emo-web-demo: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        print(f"emo-web-demo: error: cannot listen on 127.0.0.1:{args.port} ({e.strerror}); pick another --port",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    # what the page lists: visible artifacts with their sidecar (never a killed export's hidden .tmp-PID file); a
    # trained model first, so that the first prediction a user sees means something
    listed = [a for a in model_index(models, None)["artifacts"] if a["name"].endswith(BROWSER_SUFFIXES)]
    runnable = [a["name"] for a in sorted(listed, key=lambda a: not a.get("trained", False))]
    signal.signal(signal.SIGTERM, _stop)
    with server:
        print(f"web demo: {server.url}", flush=True)
        if runnable:
            # the name is percent-encoded in the path, and that path again as a query value
            path = "/".join(urllib.parse.quote(part, safe="") for part in runnable[0].split("/"))
            link = urllib.parse.quote(f"models/{path}", safe="/")
            print(f"  e.g. {server.url}?model={link}", flush=True)
        else:
            print(f"  (no .onnx/.ort/.tflite artifact with its .json sidecar in {models}: drop files onto the page)",
                  flush=True)
        print("Ctrl-C to stop", flush=True)
        try:
            server.thread.join()
        except KeyboardInterrupt:  # the way to stop a server: a clean exit, whatever more signals arrive
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0


def _stop(signum, frame) -> None:
    """SIGTERM stops the server as Ctrl-C does."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
