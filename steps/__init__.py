"""The four pipeline steps as plain typed functions (no Hera or KFP imports here)."""
