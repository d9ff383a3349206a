"""Drone telemetry sidecars: parse DJI SRT files, summarise a clip's span, find flight events, write SRT."""

from dvtr_data.telemetry.dji_srt import (
    ALTITUDE_KINDS,
    EARTH_RADIUS_M,
    Telemetry,
    TelemetryCue,
    TelemetrySummary,
    best_altitude_kind,
    find_sidecar,
    haversine_m,
    parse_srt,
    summarize,
    write_dji_fly_srt,
)
from dvtr_data.telemetry.events import EventKind, TelemetryEvent, detect_events

__all__ = [
    "ALTITUDE_KINDS",
    "EARTH_RADIUS_M",
    "EventKind",
    "Telemetry",
    "TelemetryCue",
    "TelemetryEvent",
    "TelemetrySummary",
    "best_altitude_kind",
    "detect_events",
    "find_sidecar",
    "haversine_m",
    "parse_srt",
    "summarize",
    "write_dji_fly_srt",
]
