"""Human captioning in a real Label Studio: server management, push, pull, simulate, status.

Modules: `labeling` (labeling config, task header, guidelines), `server` (the server's own venv, start/stop,
health, credentials), `client` (SDK wrapper with clear errors, per-dataset state), `push`, `pull`, `checks`
(caption validation flags), `quality` (BLEU-4 / CIDEr-D / distinct-n / self-BLEU), `simulate` (ground-truth
captions of generated flights submitted as simulated annotators), `status`, `roundtrip` (the demo's sequence).
The CLI is `dvtr_data.cli.annotate`; this package never imports Typer.
"""
