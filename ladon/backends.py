"""Where a server's batches run: in this process (:class:`LocalBackend`) or on a Ray Serve deployment
(:class:`RayServeBackend`), behind one interface: ``infer_each(packets, tasks, top_k) -> [Result | LadonError]``.

The scheduler (:mod:`ladon.scheduler`) forms fair batches across robots in the ingress process; a backend runs each
batch. With Ray, every batch is one request to a deployment of :class:`LadonDeployment` replicas (each holding the
model, on a GPU if ``num_gpus`` is set); Ray balances requests over replicas and machines of the cluster given by
``address`` (or a local Ray started here). Ray is an optional extra (``pip install 'ladon_bringup[fleet]'``).
Frames reassembled from channel groups (:class:`~ladon.reassembly.AssembledFrame`, complete or partial) travel
pickled, without their ``meta`` (the ingress's own data); replicas need only ``ladon``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import LadonError
from .packet import Packet
from .reassembly import AssembledFrame
from .results import Result

BACKENDS = ("local", "ray")


class BackendError(LadonError):
    """A backend cannot serve: Ray missing or unreachable, a replica died, a request timed out."""


class Backend(Protocol):
    """Runs batches of packets through a Ladon server."""

    def infer_each(self, packets: Sequence[Packet | AssembledFrame | bytes], tasks: Sequence[str], top_k: int
                   ) -> list[Result | LadonError]: ...

    def close(self) -> None: ...


class LocalBackend:
    """The server in this process (the default)."""

    def __init__(self, server, max_batch: int) -> None:
        self.server = server
        self.max_batch = max_batch

    def infer_each(self, packets: Sequence[Packet | AssembledFrame | bytes], tasks: Sequence[str], top_k: int
                   ) -> list[Result | LadonError]:
        return self.server.infer_each(packets, tasks, top_k, max_batch=self.max_batch)

    def close(self) -> None:
        pass


class LadonDeployment:
    """A Ray Serve replica: loads a Ladon model file once and serves batches (``infer_each``)."""

    def __init__(self, model_path: str, device: str = "cpu", max_batch: int = 32, precision: str = "fp32",
                 torch_threads: int = 0) -> None:
        import torch

        from .model_set import load_served

        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        self.model = load_served(model_path, device=device)  # one model file or a set manifest
        self.model.server.set_precision(precision)
        self.max_batch = max_batch

    def infer_each(self, packets: list[bytes | AssembledFrame], tasks: list[str], top_k: int
                   ) -> list[Result | LadonError]:
        return self.model.server.infer_each(packets, tasks, top_k, max_batch=self.max_batch)

    def identity(self) -> dict[str, Any]:
        """What the ingress checks before serving: the model hash, id and beta this replica serves."""
        s = self.model.server
        return {"model_hash": self.model.model_hash.hex(), "model_id": s.model_id, "beta": s.beta,
                "tasks": list(s.tasks), "pid": os.getpid()}


@dataclass(frozen=True)
class RaySettings:
    """How to reach or start Ray and size the deployment."""

    address: str = ""
    """``""``: start a local Ray in this process; else a cluster address (``ray://host:10001`` or ``auto``)."""
    num_replicas: int = 1
    num_cpus: float = 1.0
    """CPUs reserved per replica."""
    num_gpus: float = 0.0
    """GPUs per replica (fractions share a GPU)."""
    app_name: str = "ladon"
    request_timeout_s: float = 30.0
    local_num_cpus: int | None = None
    """CPUs of a local Ray started here (default: all)."""


def _without_meta(frame: AssembledFrame) -> AssembledFrame:
    """``frame`` as a replica receives it: its groups, without what the ingress attached (:attr:`AssembledFrame.meta`,
    e.g. the ROS header of the server node), which replicas need not be able to unpickle, nor receive."""
    return frame if frame.meta is None else dataclasses.replace(frame, meta=None)


class RayServeBackend:
    """Batches served by a Ray Serve deployment of :class:`LadonDeployment` (see the module docstring)."""

    def __init__(self, model_path: str, settings: RaySettings, *, device: str = "cpu", max_batch: int = 32,
                 precision: str = "fp32", torch_threads: int = 0) -> None:
        try:
            import ray
            from ray import serve
        except ImportError as exc:
            raise BackendError(f"backend 'ray' needs Ray Serve (pip install 'ladon_bringup[fleet]'): {exc}") from exc
        if settings.num_replicas < 1:
            raise BackendError(f"num_replicas must be >= 1, got {settings.num_replicas}")
        self._ray, self._serve, self.settings = ray, serve, settings
        self._started_ray = self._app_started = False
        try:
            if not ray.is_initialized():
                if settings.address:
                    ray.init(address=settings.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=settings.local_num_cpus, include_dashboard=False, log_to_driver=False)
                    self._started_ray = True
            deployment = serve.deployment(
                LadonDeployment, name=f"{settings.app_name}_server", num_replicas=settings.num_replicas,
                ray_actor_options={"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus},
                max_ongoing_requests=2)
            app = deployment.bind(os.path.abspath(model_path), device, max_batch, precision, torch_threads)
            self._app_started = True
            self.handle = serve.run(app, name=settings.app_name, route_prefix=None)
            self.identity = self.handle.identity.remote().result(timeout_s=max(60.0, settings.request_timeout_s))
        except BackendError:
            raise
        except Exception as exc:  # Ray raises many types for an unreachable cluster or a failed replica start
            self.close()
            raise BackendError(f"cannot start the Ray Serve deployment ({type(exc).__name__}: {exc})") from exc

    def infer_each(self, packets: Sequence[Packet | AssembledFrame | bytes], tasks: Sequence[str], top_k: int
                   ) -> list[Result | LadonError]:
        data = [p.to_bytes() if isinstance(p, Packet) else _without_meta(p) if isinstance(p, AssembledFrame)
                else bytes(p) for p in packets]  # a reassembled frame travels pickled, without the caller's meta
        try:
            return self.handle.infer_each.remote(data, list(tasks), top_k).result(
                timeout_s=self.settings.request_timeout_s)
        except Exception as exc:
            raise BackendError(f"Ray Serve request failed ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        """Delete the application; shut Ray down if this backend started it (never starts Ray itself)."""
        if self._app_started and self._ray.is_initialized():
            try:
                self._serve.delete(self.settings.app_name)
            except Exception:  # best effort at shutdown; the cluster may already be gone
                pass
        self._app_started = False
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
