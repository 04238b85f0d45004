"""The operator's side of Stratus: the `stratus` command and the local cloud."""
