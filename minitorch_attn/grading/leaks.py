"""The rule "an exercise's code may not reach into another backend, the grader or PyTorch", checked twice.

* :func:`static_leaks` (the judge, before anything runs): the exercise function and
  the functions of its module that it calls by name may not import, name or select
  (``kernels("numba")``, ``import_module("torch")``) a forbidden module.
* :class:`CallWatch` (the student's process, while the graded calls run): a profile
  hook that notices a function of the grader or of another backend running with the
  exercise's code below it on the stack, unless a stand-in of another exercise is closer.

The second catches what no reading of the source can (a name built at run time);
the first catches what a profile hook cannot see (a compiled Numba function of
another backend, whose calls make no Python frame). Standard library only.
"""
from __future__ import annotations

import ast
import sys

#: Always forbidden: the grader (its trusted PyTorch stand-ins) and PyTorch.
ALWAYS_FORBIDDEN = ("minitorch_attn.grading", "torch")
#: Forbidden unless the exercise lives there: any module whose name starts like this
#: (``backends.numba_backend`` and the ``backends.numba`` package alike).
BACKEND_FAMILIES = ("minitorch_attn.backends.numba", "minitorch_attn.backends.cuda")
#: Functions that pick a backend by name.
_BACKEND_PICKERS = {"kernels", "backend", "set_backend", "is_available"}


def forbidden_prefixes(exercise_module: str) -> tuple[str, ...]:
    return ALWAYS_FORBIDDEN + tuple(f for f in BACKEND_FAMILIES if not exercise_module.startswith(f))


def is_forbidden(name: str, prefixes) -> bool:
    for prefix in prefixes:
        if name == prefix or name.startswith(prefix + "."):
            return True
        if prefix in BACKEND_FAMILIES and name.startswith(prefix):
            return True
    return False


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if not level:
        return target or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _bindings(nodes, module, is_package):
    """``{local name: absolute dotted name}`` for the import statements among ``nodes``."""
    names = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    names[head] = head
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.level, node.module)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _dotted(node):
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def _module_level(tree):
    """Module-level statements outside functions and classes (imports inside ``if``/``try`` too)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def static_leaks(source: str, filename: str, module: str, exercise_name: str, is_package=False) -> list[str]:
    """Where the function ``exercise_name`` of ``module`` (or a function of the module it calls) breaks the rule.

    Returns lines like ``"numpy_backend.py:88 uses minitorch_attn.grading.trusted"``.
    """
    tree = ast.parse(source, filename)
    prefixes = forbidden_prefixes(module)
    own_family = next((f.rsplit(".", 1)[1] for f in BACKEND_FAMILIES if module.startswith(f)), None)
    aliases = _bindings(_module_level(tree), module, is_package)
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    todo, seen, found = [exercise_name], set(), []
    short = filename.replace("\\", "/").rsplit("/", 1)[-1]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        function = functions[name]
        local = _bindings(ast.walk(function), module, is_package)
        for node in ast.walk(function):
            line = f"{short}:{getattr(node, 'lineno', function.lineno)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _bindings([node], module, is_package).values():
                    if is_forbidden(target, prefixes):
                        found.append(f"{line} imports {target}")
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id in functions:
                    todo.append(node.id)
            if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
                dotted = _dotted(node)
                head, _, rest = (dotted or "").partition(".")
                bound = local.get(head) or aliases.get(head)
                if bound and is_forbidden(f"{bound}.{rest}" if rest else bound, prefixes):
                    found.append(f"{line} uses {bound}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and is_forbidden(node.value, prefixes):
                found.append(f"{line} names the module {node.value}")
            elif isinstance(node, ast.Call) and (_dotted(node.func) or "").rsplit(".", 1)[-1] in _BACKEND_PICKERS:
                for argument in node.args:
                    if isinstance(argument, ast.Constant) and argument.value in ("numba", "cuda") \
                            and argument.value != own_family:
                        found.append(f"{line} picks the {argument.value} backend")
    return sorted(set(found), key=lambda f: (int(f.split(":")[1].split()[0]), f))


def _nested_codes(code):
    codes = {code}
    for constant in code.co_consts:
        if hasattr(constant, "co_consts"):
            codes |= _nested_codes(constant)
    return codes


def stand_in(function):
    """``function`` wrapped so that :class:`CallWatch` knows it runs for another exercise."""
    def run_stand_in(*args, **kwargs):
        return function(*args, **kwargs)

    run_stand_in.__wrapped__ = function
    return run_stand_in


_STAND_IN_CODE = stand_in(None).__code__


class Reached(BaseException):
    """Raised into the student's code at the forbidden call (a BaseException: ``except Exception`` won't hide it)."""


class CallWatch:
    """A profile hook: records the first forbidden function that the exercise's code causes to run.

    Use as ``with CallWatch(function, module) as watch: ...``; then ``watch.found``
    is ``None`` or one line naming the function and the exercise code that led to it.
    """

    def __init__(self, exercise_function, exercise_module: str):
        self.codes = _nested_codes(exercise_function.__code__)
        # Not torch: importing it patches the standard library (inspect.getfile), so its frames turn up
        # under honest calls (Numba compiling a kernel); PyTorch is left to the static check.
        self.prefixes = tuple(p for p in forbidden_prefixes(exercise_module) if p != "torch")
        self.found = None

    def _hook(self, frame, event, arg):
        if event != "call" or self.found is not None or frame.f_code is _STAND_IN_CODE:
            return
        name = frame.f_globals.get("__name__") or ""
        if not is_forbidden(name, self.prefixes):
            return
        caller = frame.f_back
        while caller is not None:
            if caller.f_code is _STAND_IN_CODE:
                return
            if caller.f_code in self.codes:
                where = caller.f_code.co_filename.replace("\\", "/").rsplit("/", 1)[-1]
                self.found = f"{where}:{caller.f_lineno} calls {name}.{frame.f_code.co_name}"
                # Raised here, the exception stops the call before its first line (and unsets the hook).
                raise Reached(self.found)
            caller = caller.f_back

    def __enter__(self):
        self._previous = sys.getprofile()
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)
        return False
