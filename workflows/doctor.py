"""``osft-pipeline doctor``: the cluster's prerequisites for a run, checked through the Kubernetes API first.

Each finding is one line: ``ok``, ``warning`` (cannot tell, or may cost time), ``error`` (the run would fail or
hang: the line says how to fix it) or ``skipped`` (not needed for these parameters, or not visible to this
account). What is checked, with the same parameters a run would get:

- the API (connection cause: DNS, refused, TLS), the namespace, Argo Workflows' API and the installed
  WorkflowTemplate (its image is the one checked below);
- this account's RBAC (SelfSubjectAccessReview: create workflows, read templates and logs) and the workflow's
  service account (and, when this account may ask, what it may do: SubjectAccessReview);
- the workspace's storage class: exists, can give the access mode asked (ReadWriteMany by default), binding mode;
- Kubeflow Trainer's API and the ClusterTrainingRuntime, only when workers > 1;
- a node that can hold the train and evaluate pods (GPUs, memory, CPU requests);
- the image: pullable anonymously from its registry (else it is missing, or needs an image pull secret).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workflows.kube import KubeError, call, server
from workflows.params import quantity_value

# Provisioners known to give ReadWriteMany file volumes, and those that give only ReadWriteOnce (block or
# node-local). Others: "cannot tell" (the run's workspace-bound task then fails within its timeout if not).
RWX_PROVISIONERS = ("nfs.csi.k8s.io", "cephfs.csi.ceph.com", "openshift-storage.cephfs.csi.ceph.com",
                    "efs.csi.aws.com", "file.csi.azure.com", "kubernetes.io/azure-file",
                    "filestore.csi.storage.gke.io", "nfs-subdir-external-provisioner", "driver.longhorn.io",
                    "spectrumscale.csi.ibm.com", "rook-ceph.cephfs.csi.ceph.com", "cluster.local/nfs",
                    "k8s-sigs.io/nfs-subdir-external-provisioner", "nfs.csi.netapp.com")
RWO_PROVISIONERS = ("rancher.io/local-path", "ebs.csi.aws.com", "kubernetes.io/aws-ebs", "pd.csi.storage.gke.io",
                    "kubernetes.io/gce-pd", "disk.csi.azure.com", "kubernetes.io/azure-disk",
                    "openshift-storage.rbd.csi.ceph.com", "rbd.csi.ceph.com", "topolvm.io", "topolvm.cybozu.com",
                    "kubernetes.io/no-provisioner", "k8s.io/minikube-hostpath", "hostpath.csi.k8s.io",
                    "csi.vsphere.vmware.com", "cinder.csi.openstack.org")
GPU = "nvidia.com/gpu"
LAPTOP_HINT = "(examples/laptop-params.yaml sizes a laptop cluster)"


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's answer."""

    level: str  # ok | warning | error | skipped
    text: str

    def line(self) -> str:
        return f"{self.level}: {self.text}"


def _rwx(provisioner: str) -> bool | None:
    if any(provisioner == p or provisioner.endswith("/" + p) or provisioner.startswith(p) for p in RWX_PROVISIONERS):
        return True
    if provisioner in RWO_PROVISIONERS:
        return False
    return None


def _status(exc: KubeError) -> int:
    text = str(exc)
    for code in (401, 403, 404):
        if f": {code} " in text:
            return code
    return 0


def _get(api: Any, what: str, fn: Callable[[], Any]) -> tuple[Any, int]:
    """(result, 0) or (None, HTTP status) for 403/404; other errors raise."""
    try:
        return call(api, what, fn), 0
    except KubeError as exc:
        code = _status(exc)
        if code in (403, 404):
            return None, code
        raise


def _group_resources(api: Any, group_version: str) -> set[str] | None:
    """Resource names served under ``/apis/<group_version>`` (None when the API group is not served)."""
    found, code = _get(api, f"discover {group_version}", lambda: api.call_api(
        f"/apis/{group_version}", "GET", response_type="object", auth_settings=["BearerToken"],
        _return_http_data_only=True))
    if found is None:
        return None
    return {r["name"] for r in found.get("resources") or []}


def _storage(api: Any, values: Mapping[str, Any]) -> list[Finding]:
    from kubernetes import client

    storage = client.StorageV1Api(api)
    name, mode = values["phase_00_workspace_opt_storage_class"], values["phase_00_workspace_opt_access_mode"]
    fix_mode = ("; on a single-node cluster -p phase_00_workspace_opt_access_mode=ReadWriteOnce works with any class"
                if mode == "ReadWriteMany" else "")
    if not name:
        return [Finding("warning", "phase_00_workspace_opt_storage_class is empty: the workspace binds only to a "
                                   f"pre-provisioned PersistentVolume ({mode}, at least "
                                   f"{values['phase_00_workspace_opt_size']})")]
    classes, code = _get(api, "list storage classes", storage.list_storage_class)
    if classes is None:
        return [Finding("skipped", f"storage class {name!r}: this account may not read storage classes ({code})")]

    def describe(sc: Any) -> str:
        default = (sc.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
        rwx = _rwx(sc.provisioner)
        modes = {True: "ReadWriteMany", False: "ReadWriteOnce only", None: "access modes unknown"}[rwx]
        return f"{sc.metadata.name} [{'default, ' if default else ''}{sc.provisioner}, {modes}]"

    by_name = {sc.metadata.name: sc for sc in classes.items or []}
    if name not in by_name:
        have = ", ".join(describe(sc) for sc in by_name.values()) or "none"
        rwx_names = [n for n, sc in by_name.items() if _rwx(sc.provisioner)]
        if rwx_names or mode != "ReadWriteMany":
            pick = rwx_names[0] if rwx_names else next(iter(by_name), "<class>")
            fix = f"pass -p phase_00_workspace_opt_storage_class={pick}{fix_mode}"
        else:
            default = next((n for n, sc in by_name.items() if (sc.metadata.annotations or {}).get(
                "storageclass.kubernetes.io/is-default-class") == "true"), next(iter(by_name), "<class>"))
            fix = (f"install an RWX class (NFS, CephFS), or on a single-node cluster pass -p "
                   f"phase_00_workspace_opt_storage_class={default} -p phase_00_workspace_opt_access_mode="
                   "ReadWriteOnce")
        return [Finding("error", f"storage class {name!r} not found (classes here: {have}): {fix}")]
    sc = by_name[name]
    rwx = _rwx(sc.provisioner)
    wffc = sc.volume_binding_mode == "WaitForFirstConsumer"
    binding = ", binds when the first pod is scheduled (WaitForFirstConsumer)" if wffc else ""
    if mode == "ReadWriteMany" and rwx is False:
        others = [n for n, s in by_name.items() if _rwx(s.provisioner)]
        alt = f"-p phase_00_workspace_opt_storage_class={others[0]}" if others else "install an RWX class (NFS, CephFS)"
        return [Finding("error", f"storage class {name!r} ({sc.provisioner}) cannot give ReadWriteMany volumes: "
                                 f"{alt}{fix_mode}")]
    if mode == "ReadWriteMany" and rwx is None:
        return [Finding("warning", f"storage class {name!r} ({sc.provisioner}): cannot tell whether it gives "
                                   "ReadWriteMany volumes; if not, the run's workspace-bound task fails within 10 "
                                   f"minutes{binding}")]
    return [Finding("ok", f"storage class {name!r} ({sc.provisioner}) gives {mode} volumes{binding}")]


def _trainer(api: Any, values: Mapping[str, Any]) -> list[Finding]:
    workers = values["phase_02_train_man_train_workers"]
    if workers <= 1:
        return [Finding("skipped", "Kubeflow Trainer: not needed (phase_02_train_man_train_workers=1)")]
    served = _group_resources(api, "trainer.kubeflow.org/v1alpha1")
    if not served or "trainjobs" not in served:
        return [Finding("error", f"Kubeflow Trainer v2 is not installed (no trainjobs.trainer.kubeflow.org), needed "
                                 f"for phase_02_train_man_train_workers={workers}: install it (docs/cluster.md) or "
                                 "pass -p phase_02_train_man_train_workers=1")]
    runtime = values["phase_02_train_opt_runtime"]
    from kubernetes import client

    found, code = _get(api, f"get clustertrainingruntime {runtime}", lambda: client.CustomObjectsApi(api)
                       .get_cluster_custom_object("trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes",
                                                  runtime))
    if found is None and code == 404:
        listed, _ = _get(api, "list clustertrainingruntimes", lambda: client.CustomObjectsApi(api)
                         .list_cluster_custom_object("trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes"))
        names = [i["metadata"]["name"] for i in (listed or {}).get("items") or []]
        return [Finding("error", f"ClusterTrainingRuntime {runtime!r} not found (here: {', '.join(names) or 'none'}): "
                                 "pass -p phase_02_train_opt_runtime=<name>")]
    if found is None:
        return [Finding("skipped", f"ClusterTrainingRuntime {runtime!r}: this account may not read it ({code})")]
    return [Finding("ok", f"Kubeflow Trainer v2 with ClusterTrainingRuntime {runtime!r}")]


def _fmt_bytes(n: float) -> str:
    return f"{n / 2 ** 30:.1f}Gi"


def _nodes(api: Any, values: Mapping[str, Any]) -> list[Finding]:
    from kubernetes import client

    nodes, code = _get(api, "list nodes", client.CoreV1Api(api).list_node)
    if nodes is None:
        return [Finding("skipped", f"nodes: this account may not list nodes ({code}); cannot check that a node "
                                   "can hold the train and evaluate pods")]
    usable = [n for n in nodes.items or [] if not n.spec.unschedulable]
    alloc = [(n.metadata.name, n.status.allocatable or {}) for n in usable]
    out: list[Finding] = []
    pods = (("train", values["phase_02_train_man_train_gpu"], "phase_02_train_man_train_gpu",
             values["phase_02_train_opt_cpu"], values["phase_02_train_opt_memory"], "phase_02_train_opt"),
            ("evaluate", values["phase_03_eval_opt_gpu"], "phase_03_eval_opt_gpu",
             values["phase_03_eval_opt_cpu"], values["phase_03_eval_opt_memory"], "phase_03_eval_opt"))
    for step, gpus, gpu_param, cpu, memory, prefix in pods:
        need_cpu, need_mem = quantity_value(cpu) or 0, quantity_value(memory) or 0

        def fits(a: Mapping[str, str], gpus: int = gpus, need_cpu: float = need_cpu, need_mem: float = need_mem
                 ) -> bool:
            return (quantity_value(str(a.get(GPU, "0"))) or 0) >= gpus and \
                (quantity_value(str(a.get("cpu", "0"))) or 0) >= need_cpu and \
                (quantity_value(str(a.get("memory", "0"))) or 0) >= need_mem

        if any(fits(a) for _, a in alloc):
            out.append(Finding("ok", f"a node can hold the {step} pod ({gpus} GPU, {cpu} CPU, {memory})"))
            continue
        most_gpu = max((int(quantity_value(str(a.get(GPU, "0"))) or 0) for _, a in alloc), default=0)
        most_mem = max((quantity_value(str(a.get("memory", "0"))) or 0 for _, a in alloc), default=0)
        most_cpu = max((quantity_value(str(a.get("cpu", "0"))) or 0 for _, a in alloc), default=0)
        if most_gpu < gpus:
            cpu_fix = " -p phase_03_eval_opt_gpu=0" if step == "train" else ""
            out.append(Finding("error", f"no node offers {gpus} {GPU} for the {step} pod (most: {most_gpu}): pass "
                                        f"-p {gpu_param}={most_gpu}{cpu_fix if most_gpu == 0 else ''} "
                                        f"{'(CPU) ' if most_gpu == 0 else ''}{LAPTOP_HINT}"))
        elif most_mem < need_mem:
            out.append(Finding("error", f"no node has {memory} of memory for the {step} pod (most allocatable: "
                                        f"{_fmt_bytes(most_mem)}): pass -p {prefix}_memory=<less> {LAPTOP_HINT}"))
        else:
            out.append(Finding("error", f"no node has {cpu} CPU for the {step} pod (most allocatable: {most_cpu:g}): "
                                        f"pass -p {prefix}_cpu=<less> {LAPTOP_HINT}"))
    return out


def _access(api: Any, namespace: str) -> list[Finding]:
    from kubernetes import client

    authz = client.AuthorizationV1Api(api)
    wanted = (("create", "argoproj.io", "workflows", ""), ("get", "argoproj.io", "workflowtemplates", ""),
              ("get", "", "pods", "log"))
    denied = []
    for verb, group, resource, sub in wanted:
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb=verb, group=group,
                                                            resource=resource, subresource=sub or None)))
        got = call(api, "SelfSubjectAccessReview", lambda r=review: authz.create_self_subject_access_review(r))
        if not (got.status and got.status.allowed):
            denied.append(f"{verb} {resource}{'/' + sub if sub else ''}")
    if denied:
        return [Finding("error", f"your account may not {', '.join(denied)} in namespace {namespace}: ask an admin "
                                 "for Argo's edit role there (ClusterRole argo-aggregate-to-edit via the edit role)")]
    return [Finding("ok", f"your account may submit workflows and read their logs in namespace {namespace}")]


def _service_account(api: Any, namespace: str, name: str, values: Mapping[str, Any]) -> list[Finding]:
    from kubernetes import client

    sa, code = _get(api, f"get serviceaccount {name}", lambda: client.CoreV1Api(api)
                    .read_namespaced_service_account(name, namespace))
    fix = (f"install the RBAC that `osft-pipeline compile --namespace {namespace}` writes (rbac.yaml), or "
           "`osft-pipeline submit --install`")
    if sa is None and code == 404:
        return [Finding("error", f"service account {name!r} not found in namespace {namespace}: {fix}")]
    if sa is None:
        return [Finding("skipped", f"service account {name!r}: this account may not read it ({code})")]
    need = [("create", "", "persistentvolumeclaims"), ("list", "", "events"),
            ("create", "argoproj.io", "workflowtaskresults")]
    if values["phase_02_train_man_train_workers"] > 1:
        need.append(("create", "trainer.kubeflow.org", "trainjobs"))
    authz = client.AuthorizationV1Api(api)
    denied = []
    for verb, group, resource in need:
        review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{name}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb=verb, group=group,
                                                            resource=resource)))
        got, code = _get(api, "SubjectAccessReview", lambda r=review: authz.create_subject_access_review(r))
        if got is None:
            return [Finding("ok", f"service account {name!r} exists in namespace {namespace} (its permissions "
                                  f"not checked: this account may not ask, {code})")]
        if not (got.status and got.status.allowed):
            denied.append(f"{verb} {resource}")
    if denied:
        return [Finding("error", f"service account {name!r} may not {', '.join(denied)} in namespace {namespace}: "
                                 f"{fix}")]
    return [Finding("ok", f"service account {name!r} has the permissions the run's pods use")]


def _image(image: str, check: Callable[[str], tuple[str, str]]) -> list[Finding]:
    state, detail = check(image)
    if state == "ok":
        return [Finding("ok", f"image {detail}")]
    if state == "missing":
        return [Finding("error", f"image {detail}: build and push it (make image IMAGE=<registry>/<repo>:<tag>, "
                                 "then podman push), then install with --image (docs/cluster.md#the-image)")]
    if state == "private":
        return [Finding("warning", f"image {detail}: if it exists, the cluster needs a pull secret: kubectl create "
                                   "secret docker-registry <name> … and add it to the service account's "
                                   "imagePullSecrets")]
    return [Finding("warning", f"image: {detail}")]


def diagnose(api: Any, namespace: str, values: Mapping[str, Any], image: str = "",
             template: str = "osft-minimal-pipeline", service_account: str = "osft-pipeline",
             image_check: Callable[[str], tuple[str, str]] | None = None) -> list[Finding]:
    """Every finding for a run with ``values`` (validated parameters) in ``namespace``; ``image`` empty = the one
    the installed template uses (else the built-in default)."""
    from kubernetes import client

    from workflows.registry_check import check_image

    try:
        version = call(api, "connect", lambda: client.VersionApi(api).get_code())
    except KubeError as exc:
        return [Finding("error", f"Kubernetes API at {server(api)}: {str(exc).removeprefix('connect: ')}")]
    out = [Finding("ok", f"Kubernetes {version.git_version} at {server(api)}")]
    ns, code = _get(api, f"get namespace {namespace}", lambda: client.CoreV1Api(api).read_namespace(namespace))
    if ns is None and code == 404:
        return out + [Finding("error", f"namespace {namespace!r} not found: kubectl create namespace {namespace}, "
                                       "or pass -n <namespace>")]
    out.append(Finding("ok" if ns is not None else "skipped", f"namespace {namespace}" + (
        "" if ns is not None else f": this account may not read it ({code})")))

    argo = _group_resources(api, "argoproj.io/v1alpha1")
    installed_image = ""
    if not argo or not {"workflows", "workflowtemplates"} <= argo:
        out.append(Finding("error", "Argo Workflows is not installed (no workflows.argoproj.io API): install Argo "
                                    "Workflows >= 3.6 (docs/cluster.md)"))
    else:
        wt, code = _get(api, f"get workflowtemplate {template}", lambda: client.CustomObjectsApi(api)
                        .get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "workflowtemplates",
                                                      template))
        if wt is None and code == 404:
            out.append(Finding("error", f"workflowtemplate/{template} is not installed in namespace {namespace}: "
                                        f"osft-pipeline compile --namespace {namespace} --out install && kubectl "
                                        "apply -k install/ (or osft-pipeline submit --install)"))
        elif wt is None:
            out.append(Finding("skipped", f"workflowtemplate/{template}: this account may not read it ({code})"))
        else:
            images = {(t.get("script") or t.get("container") or {}).get("image") for t in wt["spec"]["templates"]}
            installed_image = next((i for i in sorted(map(str, images - {None}))), "")
            out.append(Finding("ok", f"workflowtemplate/{template} is installed (image {installed_image})"))
    out += _access(api, namespace)
    out += _service_account(api, namespace, service_account, values)
    out += _storage(api, values)
    out += _trainer(api, values)
    out += _nodes(api, values)
    from workflows.argo.pipeline import IMAGE

    out += _image(image or installed_image or IMAGE, image_check or check_image)
    return out
