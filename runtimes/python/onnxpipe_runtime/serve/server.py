"""The gRPC sidecar: onnxpipe files served over the Open Inference Protocol (KServe v2).

    with Server({"basic": "basic.onnx"}, ServeOptions(port=0)) as server:
        print(server.port)          # ModelInfer at 127.0.0.1:<port>

The service is ``inference.GRPCInferenceService`` (proto/grpc_service.proto), beside the standard health
service (``grpc.health.v1.Health``) and server reflection. Every model's metadata comes from its manifest.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from onnxpipe_runtime import __version__
from onnxpipe_runtime.errors import InputError, PipelineError
from onnxpipe_runtime.pipeline import Pipeline
from onnxpipe_runtime.serve import codec
from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
from onnxpipe_runtime.serve._proto import grpc_service_pb2_grpc as pb_grpc
from onnxpipe_runtime.serve.auth import TokenInterceptor
from onnxpipe_runtime.serve.batching import Batcher, BatchPolicy, Outputs, batch_axis
from onnxpipe_runtime.serve.status import CODE_METADATA_KEY, RequestError, from_pipeline_error
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
        for name in ("max_batch", "max_queue", "max_message_mb", "workers", "rpc_threads"):
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


def _rpc(method: Callable[..., T]) -> Callable[..., T]:
    """Turn every failure into a gRPC status carrying the onnxpipe code; nothing escapes as a crash."""

    @functools.wraps(method)
    def wrapper(self: _Servicer, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return method(self, request, context)
        except RequestError as e:
            err = e
        except PipelineError as e:
            err = from_pipeline_error(e)
        except Exception as e:
            log.exception("%s failed unexpectedly", method.__name__)
            err = RequestError("RUNTIME", f"internal error in {method.__name__}: {type(e).__name__}: {e}")
        context.set_trailing_metadata(((CODE_METADATA_KEY, err.code),))
        context.abort(err.grpc_status, err.details)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    return wrapper


class _Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: dict[str, _Model], max_message: int):
        self._models = models
        self._max_message = max_message
        self.stopping = threading.Event()

    # -- health and metadata -------------------------------------------------------------------------------
    @_rpc
    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    @_rpc
    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=not self.stopping.is_set())

    @_rpc
    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        # a probe: an unknown model or version is "not ready", not an error (as Triton answers)
        known = request.name in self._models and request.version in ("", MODEL_VERSION)
        return pb.ModelReadyResponse(ready=known and not self.stopping.is_set())

    @_rpc
    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(name="onnxpipe", version=__version__, extensions=[])

    @_rpc
    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._model(request.name, request.version).metadata

    # -- inference -----------------------------------------------------------------------------------------
    @_rpc
    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        model = self._model(request.model_name, request.model_version)
        with model.batcher.arriving():  # a batch being formed waits for this request
            raw_in = len(request.raw_input_contents) > 0
            arrays = self._inputs(model, request, raw_in)
            wanted = self._requested_outputs(model, request)
            raw_out = self._raw_outputs(request, raw_in)
            try:
                feeds = model.pipe.validate(arrays)
            except InputError as e:
                raise from_pipeline_error(e) from e
            future = model.batcher.submit(feeds)
        outputs = self._wait(model, future, context)
        response = pb.ModelInferResponse(model_name=model.name, model_version=MODEL_VERSION, id=request.id)
        for name in wanted:
            data = codec.encode_output(name, np.asarray(outputs[name]), response.outputs.add(), raw_out)
            if data is not None:
                response.raw_output_contents.append(data)
        size = response.ByteSize()
        if size > self._max_message:
            raise RequestError(
                "OVERLOADED",
                f"model {model.name!r}: the response is {size / _MB:.1f} MB, above --max-message-mb "
                f"{self._max_message // _MB}; request fewer rows or outputs",
            )
        return response

    def _model(self, name: str, version: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            raise RequestError("NOT_FOUND", f"unknown model {name!r}; this server serves {sorted(self._models)}")
        if version not in ("", MODEL_VERSION):
            raise RequestError("NOT_FOUND", f"model {name!r} has no version {version!r}; versions: [{MODEL_VERSION!r}]")
        return model

    def _inputs(self, model: _Model, request: Any, raw_in: bool) -> dict[str, np.ndarray]:
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
                    "INVALID_INPUT", f"unknown input {tensor.name!r}; model {model.name!r} expects {list(specs)}"
                )
            if tensor.name in arrays:
                raise RequestError("INVALID_INPUT", f"input {tensor.name!r} is given twice")
            if raw_in and tensor.contents.ByteSize():
                raise RequestError(
                    "INVALID_INPUT",
                    f"input {tensor.name!r} has typed contents in a request that uses raw_input_contents; "
                    "the protocol allows one or the other",
                )
            arrays[tensor.name] = codec.decode_input(spec, tensor, request.raw_input_contents[i] if raw_in else None)
        return arrays

    def _requested_outputs(self, model: _Model, request: Any) -> list[str]:
        names = [o.name for o in model.pipe.signature.outputs]
        if not request.outputs:
            return names
        wanted: list[str] = []
        for o in request.outputs:
            if o.name not in names:
                raise RequestError("NOT_FOUND", f"unknown output {o.name!r}; model {model.name!r} has outputs {names}")
            if o.name in wanted:
                raise RequestError("INVALID_INPUT", f"output {o.name!r} is requested twice")
            wanted.append(o.name)
        return wanted

    @staticmethod
    def _raw_outputs(request: Any, raw_in: bool) -> bool:
        """Raw when asked (``binary_data_output`` / ``binary_data``), else the same form as the inputs."""
        asked: dict[str, bool] = {}
        places = [("request parameter 'binary_data_output'", request.parameters, "binary_data_output")]
        places += [(f"output {o.name!r} parameter 'binary_data'", o.parameters, "binary_data") for o in request.outputs]
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
        total = opts.threads if opts.threads is not None else default_threads()
        self.threads_per_run = max(1, total // opts.workers)
        self._slots = threading.BoundedSemaphore(opts.workers)
        policy = BatchPolicy(
            max_batch=opts.max_batch if opts.batching else 1,
            max_delay=opts.max_delay_ms / 1000.0,
            max_queue=opts.max_queue,
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
        self._servicer = _Servicer(self.models, opts.max_message_mb * _MB)
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
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self._servicer, server)
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
        """Stop accepting, let in-flight requests finish (up to ``grace`` s, default --grace-s), release all."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.options.grace_s if grace is None else grace
            self._servicer.stopping.set()
            self._health.enter_graceful_shutdown()
            if self._server is not None:
                self._server.stop(grace).wait(grace + 5.0)
            self._close_models(grace)
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
