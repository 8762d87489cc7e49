"""``accelpool k8s``: ResourceSlices, CDI specs, node prepare/unprepare, the kubelet plugin."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from accelpool.errors import InvalidRequest

# slices (and the kubernetes client, a second to import) load only when a k8s command runs
from accelpool_kubernetes.names import DEFAULT_DRIVER, check_driver, check_node, check_version


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--driver", default=DEFAULT_DRIVER, help=f"DRA driver name (default {DEFAULT_DRIVER})"
    )


def _cdi_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cdi-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where claim CDI specs go (default $ACCELPOOL_CDI_DIR or /var/run/cdi)",
    )


def register(sub: Any) -> None:
    """Add ``k8s`` to the accelpool CLI."""
    k = sub.add_parser("k8s", help="Kubernetes DRA driver: ResourceSlices, CDI, kubelet plugin")
    ks = k.add_subparsers(dest="k8s_command", metavar="ACTION", parser_class=type(k))
    k.set_defaults(func=lambda args, ctx: (k.print_help(), 2)[1])

    s = ks.add_parser("slices", help="print this host's ResourceSlices")
    s.add_argument("--node", required=True, help="the Kubernetes node name of this host")
    _common(s)
    s.add_argument(
        "--kubernetes-version",
        default="1.35",
        metavar="1.34|1.35",
        help="slice layout of this release (default 1.35; later ones use it too)",
    )
    s.add_argument("--format", choices=("yaml", "json"), default="yaml")
    s.add_argument("--generation", type=int, default=1, help="pool generation (default 1)")
    s.set_defaults(func=cmd_slices)

    c = ks.add_parser("cdi", help="write (or print) CDI specs of every device and live partition")
    _common(c)
    c.add_argument("--dir", type=Path, default=None, help="write spec files here (default: print)")
    c.add_argument("--format", choices=("json", "yaml"), default="json")
    c.add_argument(
        "--watch",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --dir: keep the specs current, checking every SECONDS, until stopped",
    )
    c.set_defaults(func=cmd_cdi)

    p = ks.add_parser("prepare", help="prepare a claim's allocated devices; print CDI ids")
    p.add_argument("--claim-uid", required=True)
    p.add_argument(
        "--device", required=True, nargs="+", metavar="NAME", help="allocated device names"
    )
    p.add_argument("--namespace", default="")
    p.add_argument("--claim-name", default="")
    p.add_argument("--json", action="store_true")
    _common(p)
    _cdi_dir(p)
    p.set_defaults(func=cmd_prepare)

    u = ks.add_parser("unprepare", help="undo prepare of a claim")
    u.add_argument("--claim-uid", required=True)
    _common(u)
    _cdi_dir(u)
    u.set_defaults(func=cmd_unprepare)

    kp = ks.add_parser("kubelet-plugin", help="serve the DRA kubelet plugin on unix sockets")
    kp.add_argument("--node", required=True)
    _common(kp)
    _cdi_dir(kp)
    kp.add_argument(
        "--plugin-dir",
        type=Path,
        default=None,
        help="folder of the DRA socket (default /var/lib/kubelet/plugins/DRIVER)",
    )
    kp.add_argument(
        "--registrar-dir",
        type=Path,
        default=Path("/var/lib/kubelet/plugins_registry"),
        help="the kubelet's plugin registry (default /var/lib/kubelet/plugins_registry)",
    )
    kp.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="cluster to publish to (default: in-cluster config when in a pod)",
    )
    kp.add_argument(
        "--no-publish",
        action="store_true",
        help="write the ResourceSlices to --slices-file instead of the cluster",
    )
    kp.add_argument("--slices-file", type=Path, default=Path("resourceslices.yaml"))
    kp.add_argument(
        "--claims-dir",
        type=Path,
        default=None,
        help="read ResourceClaims from DIR/<uid>.json instead of the cluster",
    )
    kp.add_argument("--kubernetes-version", default="1.35", metavar="1.34|1.35")
    kp.add_argument(
        "--resync-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how often to look for partition changes made outside the driver (default 10)",
    )
    kp.set_defaults(func=cmd_plugin)


def cmd_slices(args: argparse.Namespace, ctx: Any) -> int:
    from accelpool_kubernetes.node import Node
    from accelpool_kubernetes.slices import host_slices, to_dict

    if args.generation < 1:
        raise InvalidRequest("--generation must be 1 or more")
    inv = ctx.inventory()
    node = Node(inv, driver=check_driver(args.driver))
    out = [
        to_dict(s)
        for s in host_slices(
            inv,
            node=args.node,
            driver=args.driver,
            version=args.kubernetes_version,
            generation=args.generation,
            bindings=node.bindings(),
        )
    ]
    if args.format == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": out}, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
    return 0


def _interval(value: float | None, flag: str) -> float | None:
    if value is not None and not 0.1 <= value <= 3600:
        raise InvalidRequest(f"{flag} takes seconds between 0.1 and 3600, not {value:g}")
    return value


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_cdi(args: argparse.Namespace, ctx: Any) -> int:
    from accelpool_kubernetes.cdi import host_specs, spec_file
    from accelpool_kubernetes.sync import sync_specs

    driver = check_driver(args.driver)
    watch = _interval(args.watch, "--watch")
    if args.dir is None:
        if watch is not None:
            raise InvalidRequest("--watch needs --dir DIR: the folder to keep current")
        specs = host_specs(ctx.inventory(), driver)
        if args.format == "json":
            print(json.dumps(list(specs.values()), indent=2))
        else:
            sys.stdout.write(yaml.safe_dump_all(list(specs.values()), sort_keys=False))
        return 0
    inv = ctx.inventory()
    for path, what in sync_specs(inv, driver, args.dir, args.format).items():
        if what == "removed":
            print(f"removed {path}", flush=True)
    for kind in host_specs(inv, driver):
        print(spec_file(args.dir, kind, args.format), flush=True)
    if watch is None:
        return 0
    stop = _until_signalled()
    while not stop.wait(watch):
        for path, what in sync_specs(inv, driver, args.dir, args.format).items():
            print(f"{what} {path}", flush=True)
    return 0


def _node(args: argparse.Namespace, ctx: Any) -> Any:
    from accelpool_kubernetes.node import Node, default_cdi_dir

    return Node(
        ctx.inventory(), driver=check_driver(args.driver), cdi_dir=args.cdi_dir or default_cdi_dir()
    )


def cmd_prepare(args: argparse.Namespace, ctx: Any) -> int:
    ids = _node(args, ctx).prepare(
        args.claim_uid, args.device, namespace=args.namespace, claim_name=args.claim_name
    )
    print(json.dumps(ids) if args.json else "\n".join(ids))
    return 0


def cmd_unprepare(args: argparse.Namespace, ctx: Any) -> int:
    done = _node(args, ctx).unprepare(args.claim_uid)
    print(f"unprepared {args.claim_uid}" if done else f"nothing prepared for {args.claim_uid}")
    return 0


def _api_client(kubeconfig: Path | None) -> Any:
    from kubernetes import client, config

    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise InvalidRequest(f"kubeconfig {kubeconfig} does not exist; pass an existing file")
        return config.new_client_from_config(config_file=str(kubeconfig))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return None


def cmd_plugin(args: argparse.Namespace, ctx: Any) -> int:
    from accelpool_kubernetes.plugin import (
        ApiClaimSource,
        DirClaimSource,
        DraService,
        KubeletPlugin,
    )
    from accelpool_kubernetes.publish import Publisher, api_sink, file_sink
    from accelpool_kubernetes.sync import Resync

    driver, node_name = check_driver(args.driver), check_node(args.node)
    version = check_version(args.kubernetes_version)
    interval = _interval(args.resync_interval, "--resync-interval")
    api = None if args.no_publish and args.claims_dir else _api_client(args.kubeconfig)
    if api is None and not (args.no_publish and args.claims_dir):
        raise InvalidRequest(
            "no cluster configured: pass --kubeconfig FILE (or run in a pod), or --no-publish "
            "with --claims-dir DIR to run without one"
        )
    node = _node(args, ctx)
    sink = file_sink(args.slices_file) if args.no_publish else api_sink(api, node_name, driver)
    publisher = Publisher(
        ctx.inventory(),
        node=node_name,
        driver=driver,
        version=version,
        bindings=node.bindings,
        sink=sink,
    )

    resync = Resync(ctx.inventory(), driver=driver, cdi_dir=node.cdi_dir, publish=publisher.publish)
    source = (
        DirClaimSource(args.claims_dir, driver, node_name)
        if args.claims_dir
        else ApiClaimSource(api, driver, node_name)
    )
    plugin_dir = args.plugin_dir or Path("/var/lib/kubelet/plugins") / driver
    plugin = KubeletPlugin(
        DraService(node, source, resync.once),
        driver=driver,
        plugin_socket=plugin_dir / "dra.sock",
        registrar_socket=args.registrar_dir / f"{driver}-reg.sock",
    )
    resync.once()
    plugin.start()
    resync.start(interval or 10.0)
    print(f"accelpool kubelet plugin {driver} serving {plugin.plugin_socket}", flush=True)
    _until_signalled().wait()
    resync.stop()
    plugin.stop()
    return 0
