"""The canary promotion script the on-call engineer runs by hand.

``python -m scripts.canary_promote promote 7`` continues version 7's canary from the route's current
weight through the remaining steps (10 -> 30 -> 50 -> 100 % by default), with a Prometheus
analysis every interval, and rolls it back when a check fails; ``status``, ``abort`` and
``rollback`` are the other on-call commands. The same as ``loopline canary ...`` and the
workflow's ``promote`` task: all three are thin over ``steps/promote.py`` and ``steps/canary/``.

Examples::

    python -m scripts.canary_promote status
    python -m scripts.canary_promote promote 7 --policy policy.yaml
    python -m scripts.canary_promote abort
"""

from __future__ import annotations

from steps.promote import canary_app

if __name__ == "__main__":
    canary_app()
