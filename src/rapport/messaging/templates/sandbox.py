"""The Jinja2 sandbox templates run in, with limits on time, work and output size.

Templates are written by marketers and rendered inside the worker, so a mistaken (or
hostile) template must not read files, reach Python internals, or stall a send. Jinja's
``ImmutableSandboxedEnvironment`` already refuses private and unsafe attributes and
mutation of lists and dicts; this module adds what it leaves open:

* **No files.** The environment has no loader, and ``include``/``import``/``extends`` are
  refused when the template is compiled (a template is one self-contained source).
* **Bounded work.** Every ``for`` loop iterates through :meth:`RapportSandbox.bounded`,
  every call (macros included) through :meth:`RapportSandbox.call`; both count against a
  per-render :class:`Budget` (iterations, call depth, CPU-time deadline). ``range`` is
  capped, and ``**`` cannot build giant integers.
* **Bounded output.** String/list ``*``, ``~`` concatenation and every filter result are
  checked against the output limit, and width-like integer arguments larger than the limit
  are refused before anything is allocated. The rendered stream is measured as it grows.

Python cannot interrupt a single C call, so the limits work by refusing the arguments that
would make one call huge, and by checking the thread's CPU clock between steps.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import ChainableUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment


@dataclass(frozen=True)
class Limits:
    """What one render may spend. The defaults leave room for a large product digest."""

    seconds: float = 1.0
    max_output: int = 1_000_000  # characters of rendered output (and of any one value)
    max_iterations: int = 100_000  # loop iterations, summed over all loops
    max_range: int = 10_000  # items in one range()
    max_depth: int = 40  # nested calls (recursive macros)
    max_exponent_bits: int = 4096  # size of an integer ** may produce


class RenderLimitExceeded(TemplateRuntimeError):
    """A render ran out of its budget; the message says which limit."""


@dataclass
class Budget:
    limits: Limits
    deadline: float
    iterations: int = 0
    depth: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise RenderLimitExceeded(f"render took longer than {self.limits.seconds:g} s")


_budget: ContextVar[Budget | None] = ContextVar("rapport_template_budget", default=None)


def start_budget(limits: Limits) -> Any:
    """Open a budget for one render; returns the token to pass to :func:`end_budget`.

    Time is the rendering thread's CPU time: a template can only spend CPU (it reads no
    files and calls nothing slow), and a render that merely waited — for the interpreter
    while the dispatcher's threads ran, for a core on a busy machine — is not a runaway
    template. On the wall clock such a wait could fail an ordinary e-mail: one customer of
    a 100,000-recipient campaign was skipped as "render took longer than 1 s".
    """
    return _budget.set(Budget(limits, time.thread_time() + limits.seconds))


def end_budget(token: Any) -> None:
    _budget.reset(token)


def _current() -> Budget | None:
    return _budget.get()


class LimitedCodeGenerator(CodeGenerator):
    """Wraps loop iterables and ``~`` concatenations in budget checks."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # ``environment.bounded(<iterable>)``: Jinja allows no custom node types, so the
        # wrapper is an ordinary call of an environment attribute.
        wrapped = node.iter
        bounded = nodes.EnvironmentAttribute("bounded", lineno=node.lineno)
        node.iter = nodes.Call(bounded, [wrapped], [], None, None, lineno=node.lineno)
        try:
            super().visit_For(node, frame)
        finally:
            node.iter = wrapped

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(")")


_FORMAT_WIDTH = re.compile(r"(?:%[-#0 +]*|\{[^{}]*?:[^{}]*?)(\d{4,})")


def _too_big(value: Any, limit: int) -> bool:
    return isinstance(value, str | bytes | list | tuple) and len(value) > limit


class RapportSandbox(ImmutableSandboxedEnvironment):
    """The environment for every template: sandboxed, loader-less, budgeted."""

    code_generator_class = LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, limits: Limits | None = None, **options: Any) -> None:
        options.setdefault("undefined", ChainableUndefined)
        super().__init__(loader=None, **options)
        self.limits = limits or Limits()
        self.globals["range"] = self._range
        for name in ("dict", "lipsum", "cycler", "joiner", "namespace"):
            self.globals.pop(name, None)
        self.filters = {name: self._checked(f) for name, f in self.filters.items()}

    # -- what generated code calls ---------------------------------------------------

    def bounded(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _current()
        if budget is None:
            yield from iterable
            return
        cap = budget.limits.max_iterations
        for item in iterable:
            budget.iterations += 1
            if budget.iterations > cap:
                raise RenderLimitExceeded(f"more than {cap} loop iterations")
            if budget.iterations & 63 == 0:
                budget.check_time()
            yield item

    def sized(self, value: Any) -> Any:
        limit = self.limits.max_output
        if _too_big(value, limit):
            raise RenderLimitExceeded(f"a value longer than {limit} characters")
        return value

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _current()
        __self._refuse_huge(args, kwargs)
        if budget is None:
            return super().call(__context, __obj, *args, **kwargs)
        budget.check_time()
        if budget.depth >= budget.limits.max_depth:
            raise RenderLimitExceeded(f"calls nested deeper than {budget.limits.max_depth}")
        budget.depth += 1
        try:
            return __self.sized(super().call(__context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limit = self.limits.max_output
        if operator == "**":
            if isinstance(right, int) and isinstance(left, int):
                bits = max(abs(left), 2).bit_length() * abs(right)
                if bits > self.limits.max_exponent_bits:
                    raise RenderLimitExceeded("an integer power too large")
            return self.sized(left**right)
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(n, int)
                    and isinstance(seq, str | list | tuple)
                    and len(seq) * max(n, 0) > limit
                ):
                    raise RenderLimitExceeded(f"a value longer than {limit} characters")
            return self.sized(left * right)
        if operator == "%" and isinstance(left, str):
            self._refuse_wide_format(left)
            self._refuse_huge((right,) if not isinstance(right, tuple) else right, {})
            return self.sized(left % right)
        return self.sized(super().call_binop(context, operator, left, right))

    # -- helpers ---------------------------------------------------------------------

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > self.limits.max_range:
            raise RenderLimitExceeded(f"range() of more than {self.limits.max_range} items")
        return rng

    def _refuse_huge(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Width-like numbers (``center(10**9)``, ``'%09999999d'``) are refused up front."""
        limit = self.limits.max_output
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
                raise RenderLimitExceeded(f"a number argument larger than {limit}")

    def _refuse_wide_format(self, fmt: str) -> None:
        """``'%09999999d' % 1`` and ``'{:>9999999}'.format(1)`` allocate their width at once."""
        for width in _FORMAT_WIDTH.findall(fmt):
            if int(width) > self.limits.max_output:
                raise RenderLimitExceeded(f"a format width larger than {self.limits.max_output}")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(getattr(value, "__self__", ""))

        def checked(*args: Any, **kwargs: Any) -> str:
            self._refuse_wide_format(fmt)
            result: str = self.sized(wrapped(*args, **kwargs))
            return result

        return checked

    def _checked(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """A filter that checks its extra arguments, the clock and the size of its result."""
        pass_arg = getattr(func, "jinja_pass_arg", None)
        skip = 2 if pass_arg is not None else 1  # the context/env argument, then the value

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._refuse_huge(args[skip:], kwargs)
            if (
                func.__name__ == "do_format"
                and len(args) >= skip
                and isinstance(args[skip - 1], str)
            ):
                self._refuse_wide_format(args[skip - 1])
            budget = _current()
            if budget is not None:
                budget.check_time()
            return self.sized(func(*args, **kwargs))

        return wrapper


def refuse_file_access(ast: nodes.Template) -> list[tuple[int, str]]:
    """The lines of ``include``/``import``/``extends``: a template is one source, no files."""
    found: list[tuple[int, str]] = []
    for kind, label in (
        (nodes.Include, "include"),
        (nodes.Import, "import"),
        (nodes.FromImport, "import"),
        (nodes.Extends, "extends"),
    ):
        for node in ast.find_all(kind):
            found.append((node.lineno, f"'{label}' is not allowed: templates cannot read files"))
    return sorted(found)


__all__ = [
    "Limits",
    "RapportSandbox",
    "RenderLimitExceeded",
    "SecurityError",
    "end_budget",
    "refuse_file_access",
    "start_budget",
]
