"""The settings of `facerestore serve` (:class:`ServeConfig`) and the loopback rule: a leaf of the
serve package, imported by its modules and re-exported by ``facerestore.serve``."""

from __future__ import annotations

import dataclasses
import ipaddress

from ..defaults import DEFAULT_MODEL

MB = 1024 * 1024


@dataclasses.dataclass
class ServeConfig:
    """What ``facerestore serve`` was asked for; the defaults are the command's."""

    host: str = "127.0.0.1"
    port: int = 7860
    model: str = DEFAULT_MODEL
    device: str = "auto"
    #: restorations that run at once (threads sharing the one model)
    workers: int = 1
    #: requests that may wait for a worker; beyond that the server answers 429
    queue: int = 16
    #: seconds a request may take, waiting included, before it is answered 504
    timeout: float = 60.0
    max_upload_mb: float = 20.0
    #: decoded pixels per photo (and per result, after upscaling)
    max_pixels: int = 40_000_000
    max_upscale: float = 4.0
    token: str | None = None
    ui: bool = True

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: the only binds allowed without a token."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
