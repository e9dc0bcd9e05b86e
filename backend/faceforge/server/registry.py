"""The table of backend methods: names, parameter schemas, and the context a method runs in.

Every method is a plain function decorated with :func:`method`, living in a module of the package
:mod:`faceforge.server.methods`. :meth:`Registry.discover` imports every module of that package and
collects the decorated functions, so adding a method touches nothing but the module it lives in.
The decorator only attaches a :class:`MethodSpec` to the function; nothing is registered as an
import side effect, and tests can build a registry from any modules they like.

Adding a method
---------------
For example the face model methods go into ``faceforge/server/methods/model.py`` (a new module is
found automatically)::

    import numpy as np

    from faceforge.server.protocol import ErrorCode, RpcError
    from faceforge.server.registry import ArraySpec, Context, Param, method


    @method(
        "model.decode",
        params={"expression": Param(int, default=0, minimum=0, doc="expression index")},
        arrays={"identity_code": ArraySpec("float32", ("N", None), doc="(N, D) identity codes")},
    )
    def decode(ctx: Context, identity_code: np.ndarray, expression: int = 0) -> dict:
        \"\"\"Meshes of N identities under one expression.\"\"\"
        model = ctx.state.get("model")  # set by model.load; survives between calls
        if model is None:
            raise RpcError(ErrorCode.MODEL_MISSING, "no face model loaded: call model.load first")
        vertices = ...  # a long loop calls ctx.progress(done, total, message) between steps
        return {"vertices": vertices, "n_vertices": int(vertices.shape[1])}

- ``params`` declares the JSON parameters (:class:`Param`); unknown, missing or mistyped ones are
  refused with ``INVALID_PARAMS`` before the function runs.
- ``arrays`` declares input arrays (:class:`~faceforge.server.arrays.ArraySpec`); they arrive as
  keyword arguments, already checked for dtype, shape and finiteness.
- A returned dict is the result; its top-level ``numpy`` arrays travel back in one ``.npz`` whose
  path replaces them as ``result["arrays"]``.
- Errors: raise :class:`~faceforge.errors.FaceForgeError` (``FACEFORGE_ERROR``),
  :class:`~faceforge.errors.DataError` (``DATA_ERROR``) or ``RpcError(code, ...)`` for a specific
  code; :class:`~faceforge.errors.Cancelled` (raised by :func:`faceforge.progress.report` when
  ``ctx.progress`` returns ``False``) becomes ``CANCELLED``; anything else is ``INTERNAL_ERROR``
  with the traceback.
- ``ctx.progress`` is a :data:`~faceforge.progress.ProgressCallback`: pass it to any long loop.
- ``immediate=True`` runs the method on the reader thread, also while a job runs: only for
  methods that answer in microseconds (``ping``, ``cancel``); they cannot take arrays.
- Import heavy modules (torch, anny) inside the function, not at module level: the server imports
  every method module at start.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Protocol

from faceforge.server.arrays import DEFAULT_MAX_ARRAY_BYTES, ArraySpec, SessionDir
from faceforge.server.protocol import ErrorCode, RpcError

__all__ = [
    "MAX_SEED",
    "REQUIRED",
    "ArraySpec",
    "Context",
    "MethodSpec",
    "Param",
    "Registry",
    "ServiceControl",
    "method",
]

#: The largest seed a method takes: torch and numpy generators both accept every seed up to here.
MAX_SEED = 2**63 - 1

_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_SPEC_ATTRIBUTE = "__faceforge_method__"
_JSON_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of a :class:`Param` that the request must give."""


@dataclass(frozen=True)
class Param:
    """One JSON parameter of a method.

    Attributes:
        kind: accepted JSON type(s): ``str``, ``int``, ``float`` (accepts integers too), ``bool``,
            ``list`` or ``dict``. ``bool`` is never taken for ``int``.
        default: value when absent; :data:`REQUIRED` makes it mandatory. A ``None`` default also
            accepts an explicit ``null``.
        doc: one line for the method's documentation.
        minimum: inclusive lower bound of a number.
        maximum: inclusive upper bound of a number.
        items: accepted type(s) of the elements of a ``list`` parameter.
    """

    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    items: type | tuple[type, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_name(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return " or ".join(_JSON_TYPE_NAMES.get(k, k.__name__) for k in kinds)

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it fits (integers converted for ``float``); else ``INVALID_PARAMS``."""
        if value is None and self.default is None:
            return None
        if not _is_instance(value, self.kind):
            raise _param_error(
                name, f"parameter {name!r} must be {self.type_name()}, got {_json_type(value)}"
            )
        if isinstance(value, int) and not isinstance(value, bool) and _wants_float(self.kind):
            value = float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise _param_error(name, f"parameter {name!r} must be >= {self.minimum}, got {value}")
            if self.maximum is not None and value > self.maximum:
                raise _param_error(name, f"parameter {name!r} must be <= {self.maximum}, got {value}")
        if isinstance(value, list) and self.items is not None:
            for index, item in enumerate(value):
                if not _is_instance(item, self.items):
                    raise _param_error(
                        name, f"element {index} of {name!r} must be {Param(self.items).type_name()}"
                    )
        return value


def _is_instance(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, tuple(k for k in kinds if k is not bool))


def _wants_float(kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return float in kinds and int not in kinds


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _param_error(name: str, message: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, message, {"param": name})


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, function, parameter and array schemas, and how it runs."""

    name: str
    function: Callable[..., Any]
    params: Mapping[str, Param] = field(default_factory=dict)
    arrays: Mapping[str, ArraySpec] = field(default_factory=dict)
    immediate: bool = False

    @property
    def doc(self) -> str:
        """First line of the function's docstring."""
        return (self.function.__doc__ or "").strip().split("\n", 1)[0]

    def describe(self) -> dict[str, Any]:
        """JSON description: doc, parameters, arrays and whether it runs immediately."""
        return {
            "doc": self.doc,
            "immediate": self.immediate,
            "params": {
                name: {
                    "type": p.type_name(),
                    "required": p.required,
                    **({} if p.required else {"default": p.default}),
                    "doc": p.doc,
                }
                for name, p in self.params.items()
            },
            "arrays": {
                name: {"spec": a.describe(), "required": a.required, "doc": a.doc}
                for name, a in self.arrays.items()
            },
        }


def method(
    name: str,
    *,
    params: Mapping[str, Param] | None = None,
    arrays: Mapping[str, ArraySpec] | None = None,
    immediate: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function ``f(ctx, **params, **arrays)`` as the backend method ``name``.

    See the module docstring for an example. The function is returned unchanged apart from the
    attached :class:`MethodSpec`.

    Raises:
        ValueError: a malformed name, ``"arrays"`` among ``params``, or arrays on an immediate method.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"method name {name!r} must be dotted lowercase words, e.g. 'model.decode'")
    params = dict(params or {})
    arrays = dict(arrays or {})
    if "arrays" in params:
        raise ValueError(f"{name}: 'arrays' is reserved for the .npz path; declare arrays with arrays=")
    if immediate and arrays:
        raise ValueError(f"{name}: immediate methods cannot take arrays")
    if set(params) & set(arrays):
        raise ValueError(f"{name}: {sorted(set(params) & set(arrays))} declared as both param and array")

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        spec = MethodSpec(name, function, MappingProxyType(params), MappingProxyType(arrays), immediate)
        setattr(function, _SPEC_ATTRIBUTE, spec)
        return function

    return decorate


class ServiceControl(Protocol):
    """What the service lets methods see and steer (used by ``version``, ``cancel``, ``shutdown``)."""

    @property
    def running(self) -> int | str | None:
        """Id of the running job, or ``None``."""

    def info(self) -> dict[str, Any]:
        """The handshake: protocol and backend versions, device, methods, session dir, limits."""

    def cancel(self, target: int | str | None) -> dict[str, Any]:
        """Ask job ``target`` (default: the running one) to stop at its next step."""

    def request_shutdown(self) -> None:
        """Cancel the running job and stop reading requests."""


class Context:
    """What a method gets besides its parameters.

    Attributes:
        request_id: id of the request being served.
        session: the session directory (for methods that write extra files).
        state: objects kept between calls of this session, e.g. ``state["model"]`` after
            ``model.load``. Only job methods may touch it (one job runs at a time).
        control: the service (see :class:`ServiceControl`).
        registry: the method table.
        max_array_bytes: the size limit for result arrays; check it before making big results.
    """

    def __init__(
        self,
        request_id: int | str,
        session: SessionDir,
        state: dict[str, Any],
        control: ServiceControl,
        registry: Registry,
        *,
        cancel_event: threading.Event | None = None,
        progress_sink: Callable[[int, int, str], None] | None = None,
        progress_interval: float = 0.05,
        max_array_bytes: int = DEFAULT_MAX_ARRAY_BYTES,
    ) -> None:
        self.request_id = request_id
        self.session = session
        self.state = state
        self.control = control
        self.registry = registry
        self.max_array_bytes = max_array_bytes
        self._cancel = cancel_event or threading.Event()
        self._sink = progress_sink
        self._interval = progress_interval
        self._last = float("-inf")

    @property
    def cancelled(self) -> bool:
        """True once ``cancel`` (or ``shutdown``) asked this job to stop."""
        return self._cancel.is_set()

    def progress(self, done: int, total: int, message: str = "") -> bool:
        """Report progress; returns ``False`` when the job should stop (a ProgressCallback).

        Notifications are sent at most every ``progress_interval`` seconds, plus the first
        (``done == 0``) and the last (``done >= total``).
        """
        if self._cancel.is_set():
            return False
        now = time.monotonic()
        if self._sink is not None and (done <= 0 or done >= total or now - self._last >= self._interval):
            self._last = now
            self._sink(done, total, message)
        return not self._cancel.is_set()


class Registry:
    """Method name -> :class:`MethodSpec`, with parameter validation.

    Raises:
        ValueError: two methods with the same name.
    """

    def __init__(self, specs: Iterable[MethodSpec], unavailable: Mapping[str, str] | None = None) -> None:
        self.unavailable = dict(unavailable or {})
        """Method modules that could not be imported -> why (e.g. a missing optional dependency)."""
        self._specs: dict[str, MethodSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                other = self._specs[spec.name].function
                raise ValueError(
                    f"method {spec.name!r} is defined twice: {other.__module__}.{other.__qualname__} and "
                    f"{spec.function.__module__}.{spec.function.__qualname__}"
                )
            self._specs[spec.name] = spec

    @classmethod
    def from_modules(
        cls, modules: Iterable[ModuleType], unavailable: Mapping[str, str] | None = None
    ) -> Registry:
        """The methods defined (not merely imported) in ``modules``."""
        specs = []
        for module in modules:
            for value in vars(module).values():
                spec = getattr(value, _SPEC_ATTRIBUTE, None)
                if isinstance(spec, MethodSpec) and getattr(value, "__module__", None) == module.__name__:
                    specs.append(spec)
        return cls(specs, unavailable)

    @classmethod
    def discover(cls, package: str = "faceforge.server.methods") -> Registry:
        """Import every module of ``package`` and collect its methods (see the module docstring).

        A module that fails with ImportError (a missing optional dependency) is left out and listed
        in :attr:`unavailable` (the handshake reports it); any other error propagates.
        """
        root = importlib.import_module(package)
        names = sorted(info.name for info in pkgutil.iter_modules(root.__path__) if not info.ispkg)
        modules, unavailable = [], {}
        for name in names:
            try:
                modules.append(importlib.import_module(f"{package}.{name}"))
            except ImportError as error:
                logging.getLogger("faceforge.server").error("method module %s unavailable: %s", name, error)
                unavailable[name] = f"{type(error).__name__}: {error}"
        return cls.from_modules(modules, unavailable)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        """Sorted method names."""
        return sorted(self._specs)

    def get(self, name: str) -> MethodSpec:
        """The method ``name``; ``METHOD_NOT_FOUND`` if there is none."""
        spec = self._specs.get(name)
        if spec is None:
            raise RpcError(
                ErrorCode.METHOD_NOT_FOUND,
                f"unknown method {name[:80]!r}",
                {"methods": self.names()},
            )
        return spec

    def describe(self) -> dict[str, dict[str, Any]]:
        """Name -> JSON description of every method."""
        return {name: self._specs[name].describe() for name in self.names()}

    def validate_params(self, spec: MethodSpec, params: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        """Check ``params`` against ``spec``.

        Returns:
            The keyword arguments (defaults filled in) and the ``"arrays"`` path (``None`` if absent).

        Raises:
            RpcError: ``INVALID_PARAMS`` naming the parameter in ``data["param"]``.
        """
        accepted = set(spec.params) | ({"arrays"} if spec.arrays else set())
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"{spec.name} has no parameter {unknown[0][:80]!r}; it takes {sorted(accepted)}",
                {"param": unknown[0][:80]},
            )
        kwargs: dict[str, Any] = {}
        for name, param in spec.params.items():
            if name in params:
                kwargs[name] = param.check(name, params[name])
            elif param.required:
                raise _param_error(name, f"{spec.name} needs the parameter {name!r} ({param.type_name()})")
            else:
                kwargs[name] = param.default
        return kwargs, params.get("arrays")
