"""The local engine: runs a compiled WorkflowTemplate on this machine with Argo's semantics."""
