"""The Kubeflow Pipelines twin of the Argo template: the same steps as KFP components."""
