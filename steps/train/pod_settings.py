"""The training pods' own settings given as ``key=value,...`` text: labels, annotations and env vars.

One set of rules for both paths (the single train pod, whose labels and annotations the WorkflowTemplate sets
when Argo creates the pod, and the nodes of a multi-node TrainJob, whose pod template carries them), and for
the preflight: label keys and values and annotation keys as the Kubernetes API server validates them
(``apimachinery/pkg/util/validation``: qualified names, label values, 256 KiB of annotations), names this
project or Argo manage refused, and env var names that look like secrets refused (a secret reaches the pods
only through a Kubernetes secret, by ``secretKeyRef``).
"""

import re

from steps.common.errors import StepError
from steps.common.kv import parse_pairs

# Labels and annotations a template can carry per training pod: the single-pod path sets them when the pod is
# created through this many fixed slots of the template's metadata (workflows/argo/pipeline.py).
MAX_POD_METADATA = 8
RESERVED_PREFIXES = ("osft-pipeline.io/", "workflows.argoproj.io/")
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "KEY")
_ANNOTATIONS_BYTES = 256 * 1024


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (``[prefix/]name``), or None."""
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return "its prefix must be a lowercase DNS subdomain (e.g. example.com/team)"
    if not name or len(name) > 63 or not _NAME.match(name):
        return ("its name must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit")
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes label value, or None."""
    if value and (len(value) > 63 or not _NAME.match(value)):
        return ("must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit (or empty)")
    return None


def _metadata(text: str, what: str, labels: bool) -> dict[str, str]:
    pairs = parse_pairs(text, what)
    if len(pairs) > MAX_POD_METADATA:
        raise StepError(f"{what}: {len(pairs)} entries; at most {MAX_POD_METADATA} are supported (the template sets "
                        "them when the pod is created)")
    for key, value in pairs.items():
        if key.startswith(RESERVED_PREFIXES):
            raise StepError(f"{what}: key {key!r} uses a prefix this pipeline or Argo manages "
                            f"({', '.join(RESERVED_PREFIXES)}); choose another")
        if (why := qualified_name_problem(key)) is not None:
            raise StepError(f"{what}: key {key!r} is not a valid Kubernetes {'label' if labels else 'annotation'} "
                            f"key: {why}")
        if labels and (why := label_value_problem(value)) is not None:
            raise StepError(f"{what}: the value of {key!r} ({value!r}) is not a valid label value: it {why}")
    if not labels and sum(len(k) + len(v) for k, v in pairs.items()) > _ANNOTATIONS_BYTES:
        raise StepError(f"{what}: the annotations are larger than 256 KiB together")
    return pairs


def parse_labels(text: str, what: str = "labels") -> dict[str, str]:
    """Pod labels from ``key=value,...``, validated as the API server does."""
    return _metadata(text, what, labels=True)


def parse_annotations(text: str, what: str = "annotations") -> dict[str, str]:
    """Pod annotations from ``key=value,...``, validated as the API server does."""
    return _metadata(text, what, labels=False)


def check_env_name(name: str, what: str = "env_vars") -> None:
    """An env var name that is portable (a C identifier) and does not look like a secret."""
    if not _ENV_NAME.match(name):
        raise StepError(f"{what}: {name!r} is not an env var name (letters, digits and '_', not starting with a "
                        "digit)")
    if any(word in name.upper() for word in _SECRET_WORDS):
        raise StepError(f"{what}: {name!r} looks like a secret: secrets reach the pods only from Kubernetes secrets "
                        "(hf-token, s3-secret, ...), never as parameter values")


def parse_env(text: str, what: str = "env_vars") -> dict[str, str]:
    """Env vars from ``KEY=VAL,...`` (names checked by :func:`check_env_name`)."""
    pairs = parse_pairs(text, what)
    for name in pairs:
        check_env_name(name, what)
    return pairs


def validate_pod_settings(labels: str = "", annotations: str = "") -> None:
    """The training pods' labels and annotations (the preflight applies this with the pipeline's values)."""
    parse_labels(labels)
    parse_annotations(annotations)
