"""``capslib`` (or ``python -m capslib``): the study's commands, and the measurement tools beside them.

``capslib run|status|book|download|pack-data|fit|score|export-folder`` are the command line of
:mod:`capslib.cli`; ``capslib bench|window|routecheck|stallrate|gradcheck|fastcheck`` run the tools of
:mod:`capslib.tools` (also ``python -m capslib.tools.<name>``). This module stands above every
layer, so it may hand over to either.

``-v``/``--verbose`` or ``-q``/``--quiet`` set how much of the library's logging shows
(:mod:`capslib.cli.logs`): anywhere in a command's arguments, before a tool's name.
"""
import importlib
import sys

# tool -> (module, what it does), in the order a user meets them
TOOLS = {
    "bench": ("capslib.tools.bench.__main__", "training throughput of the plain and fast paths on this device"),
    "window": ("capslib.tools.window", "pick the training path for a GPU window"),
    "routecheck": ("capslib.tools.routecheck", "the same cells on several training routes"),
    "stallrate": ("capslib.tools.stallrate", "how often the loss plateau holds a training, per route"),
    "gradcheck": ("capslib.tools.gradcheck", "one plateau state's gradient per route against float64"),
    "fastcheck": ("capslib.tools.fastcheck", "fast path against plain path on the same cells"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from capslib.cli import logs
    flag, rest = logs.split_leading_flags(argv)
    if rest and rest[0] in TOOLS:
        logs.configure(verbose=flag == "verbose", quiet=flag == "quiet")
        return importlib.import_module(TOOLS[rest[0]][0]).main(rest[1:])
    from capslib.cli.main import build_parser, main as cli_main
    if not argv or argv[0] in ("-h", "--help"):
        print(build_parser().format_help().rstrip())
        print("\ntools (capslib [-v|-q] TOOL --help):")
        for name, (_, what) in TOOLS.items():
            print(f"  {name:<12}{what}")
        return 0 if argv else 2
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
