"""The Kubernetes API from the user's machine (kubeconfig) or a pod (in-cluster), for ``doctor`` and ``--install``.

Uses the official ``kubernetes`` client. Failures become one line: the connection's cause (DNS, refused, TLS),
or the API's status with what to do.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from steps.common.errors import StepError
from workflows import connection

T = TypeVar("T")


class KubeError(StepError):
    """The Kubernetes API cannot be reached or refused a request."""


def api_client(kubeconfig: str = "", context: str = "") -> Any:
    """An ``ApiClient`` for the kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) or, inside a pod,
    the in-cluster service account; KubeError when there is neither."""
    from kubernetes import client, config

    path = kubeconfig or os.environ.get("KUBECONFIG", "") or str(Path.home() / ".kube" / "config")
    files = [p for p in path.split(os.pathsep) if p and Path(p).expanduser().is_file()]
    if files:
        try:
            return config.new_client_from_config(config_file=files[0], context=context or None)
        except (config.ConfigException, ValueError, OSError) as exc:
            raise KubeError(f"kubeconfig {files[0]}: {exc}") from None
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    raise KubeError("no Kubernetes API configured: no kubeconfig at "
                    f"{kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'} and not in a pod "
                    "(log in first: kubectl/oc login, or set KUBECONFIG)")


def server(api: Any) -> str:
    return str(api.configuration.host)


def call(api: Any, what: str, fn: Callable[[], T]) -> T:
    """``fn()``; a connection failure or an API error becomes a KubeError naming ``what`` and the cause."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        return fn()
    except ApiException as exc:
        raise KubeError(f"{what}: {status_text(exc)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"{what}: {connection.describe(exc, server(api))}") from None


def status_text(exc: Any) -> str:
    """An ApiException as ``<code> <reason>: <the API's message>``."""
    import json

    message = ""
    try:
        message = json.loads(exc.body or "{}").get("message", "")
    except (ValueError, AttributeError):
        message = ""
    text = f"{exc.status} {exc.reason}"
    if exc.status == 401:
        text += ": the credentials were refused (log in again: kubectl/oc login)"
    return text + (f": {message}" if message else "")


def apply_objects(objs: list[dict[str, Any]], namespace: str, api: Any = None) -> list[str]:
    """Create or replace namespaced objects (ServiceAccount, Role, RoleBinding, Secret) in ``namespace``, as
    ``kubectl apply`` would end up; returns ``kind/name`` of each."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = api if api is not None else api_client()
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    ops: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
        "ServiceAccount": (core.create_namespaced_service_account, core.read_namespaced_service_account,
                           core.replace_namespaced_service_account),
        "Secret": (core.create_namespaced_secret, core.read_namespaced_secret, core.replace_namespaced_secret),
        "Role": (rbac.create_namespaced_role, rbac.read_namespaced_role, rbac.replace_namespaced_role),
        "RoleBinding": (rbac.create_namespaced_role_binding, rbac.read_namespaced_role_binding,
                        rbac.replace_namespaced_role_binding),
    }
    done = []
    for obj in objs:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind not in ops:
            raise KubeError(f"{kind}/{name}: not an object this installer applies")
        create, read, replace = ops[kind]
        body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        what = f"install {kind.lower()}/{name} in namespace {namespace}"

        def apply(create: Any = create, read: Any = read, replace: Any = replace, body: Any = body,
                  name: str = name) -> None:
            try:
                create(namespace, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                current = read(name, namespace)
                body["metadata"]["resourceVersion"] = current.metadata.resource_version
                replace(name, namespace, body)

        try:
            call(api, what, apply)
        except KubeError as exc:
            if " 403 " in f" {exc} ":
                raise KubeError(f"{exc} (your account may not manage RBAC here: ask an admin to apply the "
                                "rbac.yaml that `osft-pipeline compile` writes)") from None
            raise
        done.append(f"{kind.lower()}/{name}")
    return done
