"""Run a script once under an audit hook and record every file the process used.

Runs inside the interpreter being traced (the coffea venv), stdlib only, importing as little as
possible before the hook is in place so the record is the script's, not ours. "Used" is the
union of: paths given to the "open" audit event (io.open, io.open_code: sources, .pyc, data
files), the "import" event's filename, every loaded module's file, and every file mapped into
the process (/proc/self/maps: the interpreter, libpython, extension modules, the native
libraries they pulled in) -- dlopen raises no audit event, so the maps are the only witness.

usage: python _trace_run.py OUT.json WORKDIR SCRIPT [ARGS...]
"""

import os
import sys


def main() -> None:
    out, workdir, script = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    opened: set[str] = set()
    add = opened.add
    fspath = os.fspath

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path = args[0]
            if isinstance(path, int):
                return
            if isinstance(path, (str, bytes, os.PathLike)):
                add(os.path.abspath(fspath(path)))  # type: ignore[arg-type]
        elif event == "import" and args[1]:
            add(os.path.abspath(fspath(args[1])))  # type: ignore[arg-type]

    sys.addaudithook(hook)
    os.chdir(workdir)
    sys.path.insert(0, workdir)
    sys.argv = [script, *sys.argv[4:]]
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec")
    status = 0
    try:
        exec(code, {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__})
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1

    modules: dict[str, str] = {}
    for name, mod in list(sys.modules.items()):
        spec = getattr(mod, "__spec__", None)
        origin = getattr(spec, "origin", None) or getattr(mod, "__file__", None)
        if isinstance(origin, str) and os.path.isabs(origin) and origin not in ("built-in",):
            loader = type(getattr(spec, "loader", None)).__name__
            if "Frozen" not in loader:  # 3.11 freezes os, site, codecs...: no file is read
                modules[name] = origin
    mapped: set[str] = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    mapped.add(parts[5].strip().removesuffix(" (deleted)"))
    except OSError:
        pass

    import json  # only now: the tracer's own imports stay out of the record

    record = {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "workdir": workdir,
        "script": script,
        "status": status,
        "opened": sorted(opened),
        "modules": modules,
        "mapped": sorted(mapped),
    }
    with open(out, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    sys.stdout.flush()
    os._exit(status)  # skip interpreter teardown: atexit handlers would only add noise


if __name__ == "__main__":
    main()
