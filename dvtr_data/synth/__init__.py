"""Seeded simulated drone flights with known truth: the test fixtures, the demo sample and benchmark input.

``generate(out_dir, preset)`` writes, per video, ``<name>.mp4`` (H.264, constant frame rate), a DJI Fly style
``<name>.SRT`` telemetry sidecar and ``<name>.truth.json`` (cuts, fades, shots, segments with template
captions, per-frame visible classes). Frames are rendered from a procedural aerial world (or an orthophoto
backdrop) through a moving pinhole camera, so shot detectors see drone footage, not coloured rectangles.
"""

from dvtr_data.synth.camera import KINDS, VIEWS, Maneuver
from dvtr_data.synth.flights import (
    TRANSITIONS,
    TRUTH_FORMAT,
    FlightSpec,
    ShotSpec,
    WorldCache,
    load_backdrop,
    load_truth,
    render_flight,
)
from dvtr_data.synth.presets import PRESETS, generate
from dvtr_data.synth.world import THEMES, build_world

__all__ = [
    "KINDS",
    "PRESETS",
    "THEMES",
    "TRANSITIONS",
    "TRUTH_FORMAT",
    "VIEWS",
    "FlightSpec",
    "Maneuver",
    "ShotSpec",
    "WorldCache",
    "build_world",
    "generate",
    "load_backdrop",
    "load_truth",
    "render_flight",
]
