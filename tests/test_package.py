"""The package's shape: one command line, import-only modules, no import cycle."""
import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
MODULES = sorted(p.stem for p in HELPERS.glob("*.py") if p.stem != "__init__")


def imports_of(module: str) -> set[str]:
    """The helpers modules `module` imports anywhere in its code (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse((HELPERS / f"{module}.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "helpers":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("helpers.")}
    return found - {module}


def test_every_module_imports_and_the_import_graph_has_no_cycle():
    graph = {m: imports_of(m) for m in MODULES}
    for module in MODULES:
        importlib.import_module(f"helpers.{module}")
    done, active = set(), []

    def visit(module):
        if module in active:
            raise AssertionError("import cycle: " + " -> ".join(active[active.index(module):] + [module]))
        if module not in done:
            active.append(module)
            for dep in sorted(graph.get(module, ())):
                visit(dep)
            active.pop()
            done.add(module)
    for module in MODULES:
        visit(module)


def test_only_the_entry_point_runs_as_a_script():
    scripts = [m for m in MODULES if '__name__ == "__main__"' in (HELPERS / f"{m}.py").read_text(encoding="utf-8")]
    assert scripts == ["__main__"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "helpers", *args], capture_output=True, text=True, timeout=300)


def test_the_command_line_lists_its_commands_and_names_a_wrong_one():
    result = run("trian")
    assert result.returncode == 2 and "unknown command 'trian'" in result.stderr
    assert all(command in result.stderr for command in ("train", "teacher", "ablate", "data", "notebooks"))
    helped = run("ablate", "--help")
    assert helped.returncode == 0 and "python -m helpers ablate" in helped.stdout


def test_the_command_line_runs_a_command():
    result = run("ablate", "--list")
    protocol, table_8 = result.stdout.strip().split("\n\n")
    assert result.returncode == 0 and len(protocol.splitlines()) == 17
    assert table_8.startswith("Table 8's other rows") and len(table_8.splitlines()) == 1 + 4


def test_each_helper_names_the_notebooks_that_use_it():
    """Its "Notebooks:" line says whose stored outputs to regenerate after changing it."""
    import inspect
    import re

    from helpers.notebooks import TAG, helpers_used, notebooks_using

    used = notebooks_using()
    assert {"augment.cutmix", "models.build_vit", "train.fit", "ablate.summarize"} <= set(used)
    assert helpers_used(Path(HELPERS.parent, "notebooks", "01_augmentation.ipynb")) >= {"augment.mixup"}
    tagged = {}
    for module in MODULES:
        mod = importlib.import_module(f"helpers.{module}")
        for name, obj in vars(mod).items():
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__ \
                    and obj.__name__ == name:  # not an alias
                tag = re.search(TAG + r"(.*)", obj.__doc__ or "")
                if tag:
                    tagged[f"{module}.{name}"] = sorted(set(re.findall(r"\b\d\d\b", tag.group(1))))
    assert tagged == used


def test_a_result_records_its_command_as_it_was_typed():
    from helpers.provenance import command_line
    assert command_line(["/r/helpers/__main__.py", "ablate", "--profile", "cpu"], "helpers.__main__") == \
        "python -m helpers ablate --profile cpu"
    assert command_line(["/r/benchmarks/teacher.py", "--save"], "benchmarks.teacher") == "python -m benchmarks.teacher --save"
    assert command_line(["benchmarks/teacher.py", "--save"], None) == "teacher.py --save"
    assert command_line(["-c"], None) == "python -c (inline code)"


def test_the_commit_is_deit_commit_where_set_else_gits_with_uncommitted_changes_marked(monkeypatch):
    import subprocess

    from helpers import provenance
    read = provenance.git_commit.__wrapped__  # past the per-process cache
    monkeypatch.setenv("DEIT_COMMIT", "feed123")
    assert read() == "feed123"
    monkeypatch.delenv("DEIT_COMMIT")
    answers = {}

    def git(command, **kwargs):
        code, out = answers[command[1]]
        return subprocess.CompletedProcess(command, code, stdout=out)
    monkeypatch.setattr(provenance.subprocess, "run", git)
    answers.update({"rev-parse": (0, "abc1234\n"), "status": (0, " M helpers/x.py\n")})
    assert read() == "abc1234-dirty"
    answers["status"] = (0, "")
    assert read() == "abc1234"
    answers["rev-parse"] = (128, "")  # not a git checkout
    assert read() == "unknown"


def test_a_result_records_the_command_it_is_given():
    from helpers.provenance import provenance
    assert provenance("python -m helpers ablate --profile ci")["command"] == "python -m helpers ablate --profile ci"


ENCODING_PROBE = r'''
import sys, sysconfig, traceback, warnings
from pathlib import Path

repo, tmp = Path(sys.argv[1]), Path(sys.argv[2])
ours, stdlib = (str(repo / "helpers"), str(repo / "benchmarks")), sysconfig.get_paths()["stdlib"]
found = []


def record(message, category, filename, lineno, file=None, line=None):
    """Note the code that called the standard library's open() without an encoding (if ours)."""
    if issubclass(category, EncodingWarning):
        caller = next(f for f in reversed(traceback.extract_stack()[:-1]) if not f.filename.startswith(stdlib))
        if caller.filename.startswith(ours):
            found.append(f"{caller.filename}:{caller.lineno}")


warnings.showwarning = record
warnings.simplefilter("always", EncodingWarning)
sys.path.insert(0, str(repo))
from benchmarks import gpu_plan
from helpers import files, gpu_results, notebooks, provenance, readme_results

provenance.git_commit.__wrapped__()
files.write_json_atomically({"model": "DeiT-Ti\u2697"}, tmp / "r.json")
assert files.read_result(tmp / "r.json") == {"model": "DeiT-Ti\u2697"}
files.write_csv_atomically([{"note": "\u00e9t\u00e9 \u2014 \u2697"}], tmp / "h.csv")
assert (tmp / "h.csv").read_text(encoding="utf-8").splitlines()[1] == "\u00e9t\u00e9 \u2014 \u2697"
gpu_results.load("throughput"), gpu_results.headline("throughput_profile"), gpu_plan._json(tmp / "r.json")
gpu_results._profile_section("c ours", repo / "results" / "throughput_profile.txt")
notebooks.helpers_used(repo / "notebooks" / "03_distillation.ipynb")
readme_results.main(["--check"])
print("\n".join(found) or "none")
'''


def test_text_files_are_utf8_whatever_the_systems_default_encoding(tmp_path):
    """Windows reads text in the locale's code page (cp1252) unless told otherwise, and the course's
    notebooks, README and results hold non-ASCII text; Python's -X warn_default_encoding names every
    read or write that leaves the encoding to the system."""
    repo = HELPERS.parent
    probe = tmp_path / "probe.py"
    probe.write_text(ENCODING_PROBE, encoding="utf-8")
    done = subprocess.run([sys.executable, "-X", "warn_default_encoding", str(probe), str(repo), str(tmp_path)],
                          capture_output=True, encoding="utf-8", cwd=tmp_path, env={**os.environ, "DEIT_COMMIT": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "none", done.stdout
