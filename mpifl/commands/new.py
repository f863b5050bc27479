"""`mpifl new job PATH [--method NAME]` and `mpifl new method NAME [--folder DIR]`:
commented, valid starting points (nothing existing is overwritten)."""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import shlex
from pathlib import Path

from mpifl.errors import InputError
from mpifl.files import write_text

EXAMPLES = """examples:
  mpifl new job jobs/mine.toml                  # FedAvg, every main key at its default
  mpifl new job jobs/prox.toml --method fedprox
  mpifl new method mymethod                     # mymethod.py (FedAvg to change) and
  mpiexec -n 2 mpifl run mymethod.toml          #   mymethod.toml, which runs it
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `new`."""
    p = sub.add_parser("new", help="write a starting job file or method plugin",
                       epilog=EXAMPLES)  # fmt: skip
    what = p.add_subparsers(dest="new_command", required=True)
    job = what.add_parser("job", help="a job file, each key commented", epilog=EXAMPLES)
    job.add_argument("path", help="the job file to write (.toml)")
    job.add_argument("--method", default="fedavg",
                     help="algorithm.name: a built-in method or 'module:Class'")  # fmt: skip
    method = what.add_parser(
        "method", epilog=EXAMPLES,
        help="a method plugin NAME.py (a working FedAvg, commented) and NAME.toml to run it",
    )  # fmt: skip
    method.add_argument("name", help="the plugin's module name (a Python identifier)")
    method.add_argument("--folder", default=".",
                        help="where to write it (run from there, to import it)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Write the files; InputError (exit 2, nothing written) for a bad name or a file that
    exists."""
    from mpifl.methods import method_fields
    from mpifl.templates.job import job_text

    if args.new_command == "job":
        path = Path(args.path)
        if path.suffix != ".toml" or not args.path.isprintable():
            raise InputError(f"new error: {args.path!r}: a job file's name is printable and "
                             "ends in .toml")  # fmt: skip
        fields = method_fields(args.method)
        _write({path: job_text(path.stem, args.method, fields, command=_command(path))})
        print(f"wrote {path}; check it with: mpifl validate {_word(path)}")
        return 0
    name = args.name
    if not name.isidentifier() or keyword.iskeyword(name) or name != name.lower():
        raise InputError(f"new error: {name!r}: a method's module name must be a lowercase "
                         "Python identifier, e.g. mymethod")  # fmt: skip
    folder = Path(args.folder)
    if not args.folder.isprintable():
        raise InputError(f"new error: --folder {args.folder!r}: must be a printable path")
    if (folder / f"{name}.py").exists():
        raise InputError(f"new error: {folder / name}.py exists; nothing written")
    if _importable(name):  # the job would import that one instead
        raise InputError(f"new error: {name!r} is the name of an installed module; choose "
                         "another")  # fmt: skip
    cls = "".join(part.title() for part in name.split("_") if part) or name.title()
    template = (Path(__file__).parents[1] / "templates" / "method.py").read_text()
    code = template.replace("TemplateMethod", cls).replace("templatemethod", name)
    fields = method_fields("mpifl.templates.method:TemplateMethod")
    source = f"# {name}.py in the folder you run from; its class {cls}"
    job = job_text(name, f"{name}:{cls}", fields, source, _command(Path(f"{name}.toml")))
    _write({folder / f"{name}.py": code, folder / f"{name}.toml": job})
    print(f"wrote {folder / name}.py and {folder / name}.toml; run them with: "
          f"cd {_word(folder)} && {_command(Path(f'{name}.toml'))}")  # fmt: skip
    return 0


def _word(path: Path) -> str:
    """A path as one shell word (quoted; ./ before a leading dash)."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def _command(job: Path) -> str:
    """How to run a job file on 2 ranks, quoted for a shell."""
    return f"mpiexec -n 2 mpifl run {_word(job)}"


def _importable(name: str) -> bool:
    """Whether Python already finds a module of this name (`__main__` counts)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return True


def _write(files: dict[Path, str]) -> None:
    """Write every file, or none if one exists already."""
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise InputError(f"new error: {', '.join(existing)} exists; nothing written")
    written = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, text, "the new file")
            written.append(path)
    except OSError as exc:
        for path in written:  # all or nothing
            path.unlink(missing_ok=True)
        raise InputError(f"new error: cannot write {path}: {exc}") from None
