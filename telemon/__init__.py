"""telemon: a metrics exporter for Telegraf and InfluxDB.

Embed it in an aiohttp app the way Telemon was embedded in a Zinc server::

    import telemon
    tm = telemon.Telemon(measurement="app")
    tm.tags["host"] = "telemon-1"
    tm.fields["meaning"] = lambda: 42
    app.router.add_get("/metrics", tm.handler)
"""

from __future__ import annotations

__version__ = "0.1.0"

from telemon.lazy import Telemon  # noqa: E402
from telemon.lineprotocol import EncoderOptions, LineEncoder  # noqa: E402
from telemon.metric import Metric  # noqa: E402

__all__ = ["EncoderOptions", "LineEncoder", "Metric", "Telemon", "__version__"]
