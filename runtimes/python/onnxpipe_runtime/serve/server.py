"""The gRPC sidecar: onnxpipe files served over the Open Inference Protocol (KServe v2).

    with Server({"basic": "basic.onnx"}, ServeOptions(port=0)) as server:
        print(server.port)          # ModelInfer at 127.0.0.1:<port>

The service is ``inference.GRPCInferenceService`` (proto/grpc_service.proto), beside the standard health
service (``grpc.health.v1.Health``) and server reflection. Every model's metadata comes from its manifest.

Its handlers take the request as bytes and parse it themselves (a generic handler without a deserializer):
a request that is not a valid message is refused as INVALID_INPUT like any other bad request, with one log
line, and grpcio's own deserialization path (which leaks on failure) is never used.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from onnxpipe_runtime import __version__
from onnxpipe_runtime.errors import PipelineError
from onnxpipe_runtime.pipeline import Pipeline
from onnxpipe_runtime.serve import codec
from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
from onnxpipe_runtime.serve.auth import TokenInterceptor
from onnxpipe_runtime.serve.batching import Batcher, BatchPolicy, Outputs, batch_axis
from onnxpipe_runtime.serve.limits import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_STRING_BYTES, Budget, Limits
from onnxpipe_runtime.serve.memory import RejectLog, Trimmer, fix_mmap_threshold
from onnxpipe_runtime.serve.status import CODE_METADATA_KEY, RequestError, clip, from_pipeline_error
from onnxpipe_runtime.threads import default_threads

__all__ = ["ConfigError", "Server", "ServeOptions", "SERVICE_NAME", "MODEL_VERSION"]

log = logging.getLogger("onnxpipe.serve")

SERVICE_NAME = "inference.GRPCInferenceService"
MODEL_VERSION = "1"  # one file, one version
PLATFORM = "onnxruntime_onnx"  # Triton's name for the same kind of model
_MB = 1024 * 1024


class ConfigError(ValueError):
    """The server cannot start with these options (a bad flag, an unreadable certificate, ...)."""

    code = "CONFIG"


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``onnxpipe serve`` can be told (docs/serving.md)."""

    host: str = "127.0.0.1"
    port: int = 8001
    batching: bool = True
    max_batch: int = 32
    max_delay_ms: float = 2.0
    max_queue: int = 256
    max_message_mb: int = 64
    max_elements: int = DEFAULT_MAX_ELEMENTS  # per request and per merged batch (spec/limits.json)
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    threads: int | None = None  # total intra-op threads; None: onnxpipe_runtime.default_threads()
    workers: int = 1  # model runs at once across the server; each gets threads // workers
    rpc_threads: int = 64
    grace_s: float = 30.0
    providers: tuple[str, ...] = field(default=("CPUExecutionProvider",))
    accelerator: str = "cpu"  # where each model's model stage runs: cpu, openvino, auto (docs/accelerators.md)
    precision: str | None = None

    def check(self) -> None:
        for name in ("max_batch", "max_queue", "max_message_mb", "max_elements", "max_string_bytes", "workers",
                     "rpc_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: expected a whole number >= 1, got {getattr(self, name)}")
        if self.max_delay_ms < 0 or self.grace_s < 0:
            raise ConfigError("--max-delay-ms and --grace-s must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port: expected 0..65535, got {self.port}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together; give both or neither")
        if self.token is not None and not self.token:
            raise ConfigError("--token: expected a non-empty token")


@dataclass
class _Model:
    name: str
    pipe: Pipeline
    batcher: Batcher
    metadata: Any  # ModelMetadataResponse


T = TypeVar("T")


def _rpc(request_type: Any) -> Callable[[Callable[..., T]], Callable[..., Any]]:
    """Parse the request bytes as ``request_type`` and turn every failure into a gRPC status carrying the
    onnxpipe code, with one (rate-limited) log line and no traceback; nothing escapes as a crash.

    A failure is answered with ``set_code`` and an empty message, not ``context.abort``: abort raises, and the
    exception grpcio keeps would hold (in a reference cycle, until a full garbage collection) the frames of
    this call, its request bytes and parsed message included: +3x the request size per refused request.
    """

    def decorate(method: Callable[..., T]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: _Servicer, data: bytes, context: grpc.ServicerContext) -> Any:
            try:
                answer = _answer(self, method, request_type, data, context)
            finally:
                self.trimmer.note(len(data))
            if isinstance(answer, RequestError):
                context.set_trailing_metadata(((CODE_METADATA_KEY, answer.code),))
                context.set_code(answer.grpc_status)
                context.set_details(answer.details)
                return b""
            return answer

        wrapper.request_type = request_type  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _answer(servicer: _Servicer, method: Callable[..., Any], request_type: Any, data: bytes,
            context: grpc.ServicerContext) -> Any:
    """The response, or a fresh RequestError (no traceback, nothing of the request held) for a failure."""
    try:
        try:
            request = request_type.FromString(data)
        except DecodeError as e:
            what = request_type.DESCRIPTOR.name
            raise RequestError("INVALID_INPUT", f"the request ({len(data):,} bytes) is not a valid {what} message") from e
        return method(servicer, request, context)
    except RequestError as e:
        err = RequestError(e.code, e.message)
        _forget(e)
    except PipelineError as e:
        err = from_pipeline_error(e)
        _forget(e)
    except Exception as e:  # a bug of ours: one line (the traceback at DEBUG), the client gets INTERNAL
        log.debug("%s failed unexpectedly", method.__name__, exc_info=True)
        err = RequestError("RUNTIME", f"internal error in {method.__name__}: {type(e).__name__}: {e}")
        _forget(e)
    servicer.refused(logging.ERROR if err.code == "RUNTIME" else logging.INFO,
                     "%s refused: %s", method.__name__, err.details)
    return err


def _forget(error: BaseException) -> None:
    """Drop the frames an exception (and its causes) holds: the exception may outlive this call (a Future keeps
    the one it raised), and its frames hold the request."""
    todo: list[BaseException | None] = [error]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__]


class _Servicer:
    """The inference service; each public method is one RPC (bytes in, a response message or bytes out)."""

    RPCS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")

    def __init__(self, models: dict[str, _Model], max_message: int, limits: Limits):
        self._models = models
        self._max_message = max_message
        self._limits = limits
        self.stopping = threading.Event()
        self.refused = RejectLog(log)
        self.trimmer = Trimmer()
        self._inflight = 0  # ModelInfer calls accepted (begun before stopping) and not yet answered
        self._idle = threading.Condition()
        #: test hook: called with the model name on the RPC thread once an inference request is accepted
        self.on_accepted: Callable[[str], None] | None = None

    def handler(self) -> grpc.GenericRpcHandler:
        def serialize(response: Any) -> bytes:
            return response if isinstance(response, bytes) else response.SerializeToString()

        handlers = {
            name: grpc.unary_unary_rpc_method_handler(getattr(self, name), response_serializer=serialize)
            for name in self.RPCS
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def drain(self, timeout: float) -> bool:
        """Refuse new inference calls (UNAVAILABLE) and wait up to ``timeout`` s for the accepted ones."""
        end = time.monotonic() + timeout
        with self._idle:
            self.stopping.set()
            while self._inflight:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- health and metadata -------------------------------------------------------------------------------
    @_rpc(pb.ServerLiveRequest)
    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    @_rpc(pb.ServerReadyRequest)
    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=not self.stopping.is_set())

    @_rpc(pb.ModelReadyRequest)
    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        # a probe: an unknown model or version is "not ready", not an error (as Triton answers)
        known = request.name in self._models and request.version in ("", MODEL_VERSION)
        return pb.ModelReadyResponse(ready=known and not self.stopping.is_set())

    @_rpc(pb.ServerMetadataRequest)
    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(name="onnxpipe", version=__version__, extensions=[])

    @_rpc(pb.ModelMetadataRequest)
    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._model(request.name, request.version).metadata

    # -- inference -----------------------------------------------------------------------------------------
    @_rpc(pb.ModelInferRequest)
    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> bytes:
        with self._idle:
            if self.stopping.is_set():
                raise RequestError("CLOSED", "the server is shutting down; retry on another instance")
            self._inflight += 1
        try:
            if self.on_accepted is not None:
                self.on_accepted(request.model_name)
            return self._infer(request, context)
        finally:
            with self._idle:
                self._inflight -= 1
                if not self._inflight:
                    self._idle.notify_all()

    def _infer(self, request: Any, context: grpc.ServicerContext) -> bytes:
        model = self._model(request.model_name, request.model_version)
        budget = Budget(self._limits)
        with model.batcher.arriving():  # a batch being formed waits for this request
            raw_in = len(request.raw_input_contents) > 0
            arrays = self._inputs(model, request, raw_in, budget)
            wanted = self._requested_outputs(model, request)
            raw_out = self._raw_outputs(request, raw_in)
            future = model.batcher.submit(arrays, budget.used_elements, budget.used_string_bytes, inline=True)
        outputs = future.result() if future.done() else self._wait(model, future, context)
        response = pb.ModelInferResponse(model_name=model.name, model_version=MODEL_VERSION, id=request.id)
        for name in wanted:
            data = codec.encode_output(name, np.asarray(outputs[name]), response.outputs.add(), raw_out)
            if data is not None:
                response.raw_output_contents.append(data)
        out = response.SerializeToString()
        if len(out) > self._max_message:
            raise RequestError(
                "OVERLOADED",
                f"model {model.name!r}: the response is {len(out) / _MB:.1f} MB, above --max-message-mb "
                f"{self._max_message // _MB}; request fewer rows or outputs",
            )
        return out

    def _model(self, name: str, version: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            raise RequestError("NOT_FOUND", f"unknown model {clip(name)}; this server serves {sorted(self._models)}")
        if version not in ("", MODEL_VERSION):
            raise RequestError(
                "NOT_FOUND", f"model {name!r} has no version {clip(version)}; versions: [{MODEL_VERSION!r}]"
            )
        return model

    def _inputs(self, model: _Model, request: Any, raw_in: bool, budget: Budget) -> dict[str, np.ndarray]:
        specs = {s.name: s for s in model.pipe.signature.inputs}
        if raw_in and len(request.raw_input_contents) != len(request.inputs):
            raise RequestError(
                "INVALID_INPUT",
                f"the request has {len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} "
                "input(s); expected one per input, in order",
            )
        arrays: dict[str, np.ndarray] = {}
        for i, tensor in enumerate(request.inputs):
            spec = specs.get(tensor.name)
            if spec is None:
                raise RequestError(
                    "INVALID_INPUT", f"unknown input {clip(tensor.name)}; model {model.name!r} expects {list(specs)}"
                )
            if tensor.name in arrays:
                raise RequestError("INVALID_INPUT", f"input {tensor.name!r} is given twice")
            if raw_in and tensor.contents.ByteSize():
                raise RequestError(
                    "INVALID_INPUT",
                    f"input {tensor.name!r} has typed contents in a request that uses raw_input_contents; "
                    "the protocol allows one or the other",
                )
            raw = request.raw_input_contents[i] if raw_in else None
            arrays[tensor.name] = codec.decode_input(spec, tensor, raw, budget)
        return arrays

    def _requested_outputs(self, model: _Model, request: Any) -> list[str]:
        names = [o.name for o in model.pipe.signature.outputs]
        if not request.outputs:
            return names
        wanted: list[str] = []
        for o in request.outputs:
            if o.name not in names:
                raise RequestError(
                    "NOT_FOUND", f"unknown output {clip(o.name)}; model {model.name!r} has outputs {names}"
                )
            if o.name in wanted:
                raise RequestError("INVALID_INPUT", f"output {o.name!r} is requested twice")
            wanted.append(o.name)
        return wanted

    @staticmethod
    def _raw_outputs(request: Any, raw_in: bool) -> bool:
        """Raw when asked (``binary_data_output`` / ``binary_data``), else the same form as the inputs."""
        asked: dict[str, bool] = {}
        places = [("request parameter 'binary_data_output'", request.parameters, "binary_data_output")]
        places += [(f"output {clip(o.name)} parameter 'binary_data'", o.parameters, "binary_data")
                   for o in request.outputs]
        for where, params, key in places:
            if key in params:
                p = params[key]
                if p.WhichOneof("parameter_choice") != "bool_param":
                    raise RequestError(
                        "INVALID_INPUT", f"{where}: {p.WhichOneof('parameter_choice')} given, expected bool_param"
                    )
                asked[where] = p.bool_param
        if len(set(asked.values())) > 1:
            raise RequestError(
                "INVALID_INPUT", f"outputs are asked both raw and typed ({asked}); a response carries one or the other"
            )
        return next(iter(asked.values())) if asked else raw_in

    @staticmethod
    def _wait(model: _Model, future: futures.Future[Outputs], context: grpc.ServicerContext) -> Outputs:
        # a caller that goes away (cancel, disconnect, deadline) takes its queued request with it
        context.add_callback(future.cancel)
        remaining = context.time_remaining()  # huge when the client set no deadline
        try:
            return future.result(timeout=remaining if remaining is not None and remaining < 1e6 else None)
        except futures.TimeoutError as e:
            future.cancel()
            raise RequestError("DEADLINE", f"model {model.name!r}: the client's deadline passed") from e
        except futures.CancelledError as e:
            raise RequestError("CLOSED", f"model {model.name!r}: the call was cancelled") from e


def _metadata(name: str, pipe: Pipeline) -> Any:
    sig = pipe.signature
    return pb.ModelMetadataResponse(
        name=name,
        versions=[MODEL_VERSION],
        platform=PLATFORM,
        inputs=[
            pb.ModelMetadataResponse.TensorMetadata(
                name=s.name, datatype=codec.DATATYPES[s.dtype], shape=codec.metadata_shape(s)
            )
            for s in sig.inputs
        ],
        outputs=[
            pb.ModelMetadataResponse.TensorMetadata(
                name=s.name, datatype=codec.DATATYPES[s.dtype], shape=codec.metadata_shape(s)
            )
            for s in sig.outputs
        ],
    )


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    """The protocol (kept out of protobuf's default pool, see proto/generate.py) plus health and reflection."""
    pool = descriptor_pool.DescriptorPool()
    for module in (pb, health_pb2, reflection_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    return pool


def _target(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r}: cannot read it ({e.strerror})") from e


class Server:
    """Serves ``models`` (name -> .onnx path). ``start()`` binds and returns self; ``stop()`` drains.

    Use as a context manager. Loading errors (ModelLoadError, ...) are raised from the constructor.
    """

    def __init__(self, models: Mapping[str, str | Path], options: ServeOptions | None = None):
        self.options = opts = options or ServeOptions()
        opts.check()
        if not models:
            raise ConfigError("no model given; expected at least one .onnx file")
        fix_mmap_threshold()  # large request buffers go back to the system when freed (serve/memory.py)
        total = opts.threads if opts.threads is not None else default_threads()
        self.threads_per_run = max(1, total // opts.workers)
        self._slots = threading.BoundedSemaphore(opts.workers)
        limits = Limits(max_elements=opts.max_elements, max_string_bytes=opts.max_string_bytes)
        policy = BatchPolicy(
            max_batch=opts.max_batch if opts.batching else 1,
            max_delay=opts.max_delay_ms / 1000.0,
            max_queue=opts.max_queue,
            limits=limits,
        )
        self.models: dict[str, _Model] = {}
        try:
            for name, path in models.items():
                if opts.accelerator == "cpu":
                    pipe = Pipeline.load(path, threads=self.threads_per_run, providers=list(opts.providers),
                                         precision=opts.precision)
                else:
                    pipe = Pipeline.load(path, threads=self.threads_per_run, accelerator=opts.accelerator,
                                         precision=opts.precision)
                    log.info("model %r: model stage on %s %s (%s)", name, pipe.accelerator, pipe.precision or "",
                             ", ".join(f"{k}: {v}" for k, v in pipe.placement.items()))
                if pipe.manifest is None:
                    log.warning("model %r: %s has no onnxpipe manifest (plain ONNX): serving it with the signature "
                                "ONNX Runtime reports", name, path)
                axis, why = batch_axis(pipe.signature) if opts.batching else (None, "--no-batching")
                batcher = Batcher(name, pipe, axis, policy, self._slots, workers=opts.workers)
                self.models[name] = _Model(name, pipe, batcher, _metadata(name, pipe))
                if batcher.batching:
                    log.info("model %r: %s, batching on axis %r (max %d, delay %g ms)",
                             name, path, axis, policy.max_batch, opts.max_delay_ms)
                else:
                    log.info("model %r: %s, batching off (%s)", name, path, why or f"--max-batch {opts.max_batch}")
        except BaseException:
            self._close_models(0.0)
            raise
        self._servicer = _Servicer(self.models, opts.max_message_mb * _MB, limits)
        self._health = health.HealthServicer()
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self.port: int = 0

    @property
    def address(self) -> str:
        return _target(self.options.host, self.port)

    def start(self) -> Server:
        """Bind and serve; on failure (ConfigError) the models are released and the object is spent."""
        try:
            return self._start()
        except BaseException:
            self._close_models(0.0)
            raise

    def _start(self) -> Server:
        opts = self.options
        limit = opts.max_message_mb * _MB
        interceptors = [TokenInterceptor(opts.token)] if opts.token else []
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=opts.rpc_threads, thread_name_prefix="onnxpipe-rpc"),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),  # a taken port is an error, not a silently shared one
            ],
            maximum_concurrent_rpcs=opts.rpc_threads + opts.max_queue,
        )
        server.add_generic_rpc_handlers((self._servicer.handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        services = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, server, pool=_reflection_pool())
        target = _target(opts.host, opts.port)
        try:
            if opts.tls_cert is not None and opts.tls_key is not None:
                creds = grpc.ssl_server_credentials([(_read(opts.tls_key, "--tls-key"), _read(opts.tls_cert, "--tls-cert"))])
                self.port = server.add_secure_port(target, creds)
            else:
                self.port = server.add_insecure_port(target)
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {target}: {e}") from e
        if self.port == 0:
            raise ConfigError(f"cannot listen on {target} (address in use or not available)")
        server.start()
        self._server = server
        for service in ("", SERVICE_NAME):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace`` s, default --grace-s), release all.

        Every inference call accepted before ``stop`` is answered; later ones get UNAVAILABLE from the
        still-listening server while the accepted ones finish. Only then does gRPC itself shut down (it
        cancels calls it has received but not yet handed over, so it must not stop while any can come in).
        """
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.options.grace_s if grace is None else grace
            end = time.monotonic() + grace
            self._health.enter_graceful_shutdown()
            if not self._servicer.drain(grace):
                log.warning("stopping: requests still running after --grace-s %g; they are cancelled", grace)
            if self._server is not None:
                left = max(0.0, end - time.monotonic())
                self._server.stop(left).wait(left + 5.0)
            self._close_models(max(0.0, end - time.monotonic()))
            self._servicer.trimmer.close()
            self._stopped.set()

    def _close_models(self, timeout: float) -> None:
        for model in self.models.values():
            model.batcher.close(timeout)
            model.pipe.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (True) or ``timeout`` seconds passed (False)."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Server:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def on_accepted(self) -> Callable[[str], None] | None:
        """Test hook: called (with the model name) on the RPC thread once an inference request is accepted."""
        return self._servicer.on_accepted

    @on_accepted.setter
    def on_accepted(self, hook: Callable[[str], None] | None) -> None:
        self._servicer.on_accepted = hook
