"""Rendered test flights shared by several test files (the spec only: each test renders it where it needs it)."""

from __future__ import annotations

from fractions import Fraction

from dvtr_data.synth.camera import Maneuver as M
from dvtr_data.synth.flights import FlightSpec, ShotSpec

EDIT = FlightSpec("tr_edit", 640, 360, Fraction(25), (
    ShotSpec("suburb", 11, (M("straight", 2.4, speed_mps=12.0),), altitude_m=40),
    ShotSpec("coast", 12, (M("orbit", 2.4, "oblique", direction=1),), altitude_m=50),
    ShotSpec("forest", 13, (M("yaw", 2.4, direction=-1),), altitude_m=60),
    ShotSpec("lakeside", 14, (M("straight", 2.4, "oblique", speed_mps=10.0),), altitude_m=45),
    ShotSpec("farmland", 15, (M("climb", 2.4, rate=4.0),), altitude_m=50),
), transitions=("crossfade", "fade_black", "fade_white", "cut"), fade_s=0.6, seed=3, world_px=1024, world_res_m=0.25)
"""An edit with every join: a dissolve out of a fast low straight, a fade to black, a fade to white, a cut.

The transitions tests check the scanner on it; the ingest-truth tests check that no clip holds a transition
frame and that each clip's telemetry is its own shot's.
"""
