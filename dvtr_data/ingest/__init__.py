"""The ingest stage: raw flights -> ``flights.parquet``, ``clips.parquet`` and frame-exact clip files.

Modules, in the order a flight goes through them: `discover` (find videos and their sidecars), `probe` (what is in
a file), `scan` (the one decode pass: cuts and QC signals), `shots` (PySceneDetect detectors), `windows` (long-shot
windowing), `qc` (per-clip verdicts), `cutting` (frame-exact clip files), and `stage` (the driver that runs a
flight in a worker and writes the tables).
"""

from dvtr_data.ingest.stage import (
    FlightMeta,
    IngestConfig,
    IngestReport,
    clip_id_of,
    flight_id_from_hash,
    ingest,
    ingest_flight,
)

__all__ = [
    "FlightMeta",
    "IngestConfig",
    "IngestReport",
    "clip_id_of",
    "flight_id_from_hash",
    "ingest",
    "ingest_flight",
]
