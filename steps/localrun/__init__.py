"""Run rendered Argo Workflow YAML on this machine, in the spirit of Kubeflow's ``kfp.local``.

The library API is :func:`run_workflow`; the command is ``loopline run FILE -p NAME=VALUE``.
"""

from steps.localrun.executor import RunOptions, run_workflow
from steps.localrun.record import RunRecord

__all__ = ["RunOptions", "RunRecord", "run_workflow"]
