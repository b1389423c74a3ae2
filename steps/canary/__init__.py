"""The canary promotion, above the platform layer: the pure judge (``judge``), Prometheus reads
(``analysis``), the step-by-step promotion (``promotion``), the lock (``lock``) and the analysis
record and its report (``record``, ``report``). ``steps/promote.py`` wires them to the world."""
