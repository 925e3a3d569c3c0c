"""The Argo Workflows binding: Hera templates, compile, lint and submission."""
