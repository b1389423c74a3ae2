"""The local stand-in for a cluster's serving stack, with real parts (``loopline stack``).

A BentoML worker per track (``serving.launch``), HAProxy as the weighted route, Prometheus
scraping both tracks and Locust generating steady traffic; see ``steps/platform/README.md``.
"""

from steps.platform.local.stack import LocalPlatform, PartStatus

__all__ = ["LocalPlatform", "PartStatus"]
