"""Tests of scripts/kustomize_build.py: the offline kustomize build the validator relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.kustomize_build import KustomizeError, build, strategic_merge


def _write(path: Path, *documents: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def _deployment(name: str, track: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "m", "track": track}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "m:1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        },
                        {"name": "sidecar", "image": "s:1"},
                    ]
                }
            },
        },
    }


def _tree(root: Path) -> None:
    _write(
        root / "base" / "kustomization.yaml",
        {
            "namespace": "serving",
            "labels": [{"pairs": {"part-of": "loopline"}}],
            "resources": ["workloads.yaml", "ns.yaml"],
            "configMapGenerator": [
                {
                    "name": "dash",
                    "files": ["board.json", "renamed.json=board.json"],
                    "literals": ["mode=x"],
                    "options": {"disableNameSuffixHash": True, "labels": {"grafana": "1"}},
                }
            ],
        },
    )
    _write(root / "base" / "workloads.yaml", _deployment("a", "stable"), _deployment("b", "canary"))
    _write(
        root / "base" / "ns.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "serving"}},
    )
    (root / "base" / "board.json").write_text('{"panels": []}\n')
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ignored"},
        "spec": {
            "template": {
                "spec": {
                    "nodeSelector": {"arch": "arm64"},
                    "containers": [{"name": "server", "env": [{"name": "B", "value": "3"}]}],
                }
            }
        },
    }
    _write(root / "overlay" / "tracks.yaml", patch)
    _write(
        root / "overlay" / "canary.yaml",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "b"},
            "spec": {"replicas": None},
        },
    )
    _write(
        root / "overlay" / "kustomization.yaml",
        {
            "resources": ["../base"],
            "replicas": [{"name": "a", "count": 1}],
            "patches": [
                {"path": "tracks.yaml", "target": {"kind": "Deployment", "labelSelector": "app=m"}},
                {"path": "canary.yaml"},
            ],
        },
    )


def test_overlay_builds_like_kustomize(tmp_path: Path) -> None:
    _tree(tmp_path)

    built = {(doc["kind"], doc["metadata"]["name"]): doc for doc in build(tmp_path / "overlay")}

    assert set(built) == {
        ("Deployment", "a"),
        ("Deployment", "b"),
        ("Namespace", "serving"),
        ("ConfigMap", "dash"),
    }
    stable, canary = built[("Deployment", "a")], built[("Deployment", "b")]
    assert stable["metadata"]["namespace"] == "serving"
    assert "namespace" not in built[("Namespace", "serving")]["metadata"]
    assert stable["metadata"]["labels"] == {"app": "m", "track": "stable", "part-of": "loopline"}
    assert stable["spec"]["replicas"] == 1
    assert "replicas" not in canary["spec"]
    for deployment in (stable, canary):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"arch": "arm64"}
        assert [c["name"] for c in pod["containers"]] == ["server", "sidecar"]
        assert pod["containers"][0]["image"] == "m:1"
        assert pod["containers"][0]["env"] == [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "3"},
        ]
    config_map = built[("ConfigMap", "dash")]
    assert config_map["metadata"] == {
        "name": "dash",
        "labels": {"grafana": "1", "part-of": "loopline"},
        "namespace": "serving",
    }
    assert config_map["data"] == {
        "board.json": '{"panels": []}\n',
        "renamed.json": '{"panels": []}\n',
        "mode": "x",
    }


def test_strategic_merge_replaces_unnamed_lists_and_leaves_its_inputs_alone() -> None:
    base = {"values": [1, 2], "keep": {"x": 1}}

    merged = strategic_merge(base, {"values": [3], "keep": {"y": 2}})

    assert merged == {"values": [3], "keep": {"x": 1, "y": 2}}
    assert base == {"values": [1, 2], "keep": {"x": 1}}


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        (
            {"resources": ["w.yaml"], "commonLabels": {"a": "b"}},
            "fields not supported by this builder: ['commonLabels']",
        ),
        ({"resources": ["gone.yaml"]}, "resource 'gone.yaml' does not exist"),
        ({"resources": ["https://example.com/x"]}, "cannot be built offline"),
        (
            {
                "resources": ["w.yaml"],
                "patches": [{"patch": "kind: Deployment\nmetadata: {name: zzz}\n"}],
            },
            "matches no resource",
        ),
        (
            {"configMapGenerator": [{"name": "c", "literals": ["a=b"]}]},
            "set options.disableNameSuffixHash: true",
        ),
        (
            {"resources": ["w.yaml"], "replicas": [{"name": "zzz", "count": 1}]},
            "no Deployment named 'zzz'",
        ),
    ],
    ids=["unsupported", "missing", "remote", "unmatched-patch", "hash", "replicas"],
)
def test_what_it_cannot_build_is_refused_by_name(
    tmp_path: Path, kustomization: dict[str, Any], message: str
) -> None:
    _write(tmp_path / "w.yaml", _deployment("a", "stable"))
    _write(tmp_path / "kustomization.yaml", kustomization)

    with pytest.raises(KustomizeError) as raised:
        build(tmp_path)

    assert message in str(raised.value)
    assert str(tmp_path / "kustomization.yaml") in str(raised.value)
