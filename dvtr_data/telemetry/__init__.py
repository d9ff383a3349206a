"""Drone telemetry: parse DJI SRT sidecars and GoPro GPMF tracks, check plausibility, match sidecars to their
videos, summarise a clip's span, find flight events, write SRT."""

from dvtr_data.telemetry.dji_srt import (
    ALTITUDE_KINDS,
    EARTH_RADIUS_M,
    Telemetry,
    TelemetryCue,
    best_altitude_kind,
    find_sidecar,
    haversine_m,
    parse_srt,
    write_dji_fly_srt,
)
from dvtr_data.telemetry.events import EventKind, TelemetryEvent, detect_events
from dvtr_data.telemetry.gpmf import EmbeddedTelemetry, gpmf_to_telemetry, read_embedded, read_gpmf
from dvtr_data.telemetry.matching import SidecarMatch, format_duration, match_sidecar
from dvtr_data.telemetry.plausibility import (
    DEFAULT_LIMITS,
    REASONS,
    TelemetryCheck,
    TelemetryLimits,
    check_telemetry,
)
from dvtr_data.telemetry.summary import (
    SPAN_CROSSES_BOUNDARY,
    TelemetrySummary,
    split_at,
    summarize,
    summarize_clips,
)

__all__ = [
    "ALTITUDE_KINDS",
    "DEFAULT_LIMITS",
    "EARTH_RADIUS_M",
    "REASONS",
    "SPAN_CROSSES_BOUNDARY",
    "EmbeddedTelemetry",
    "EventKind",
    "SidecarMatch",
    "Telemetry",
    "TelemetryCheck",
    "TelemetryCue",
    "TelemetryEvent",
    "TelemetryLimits",
    "TelemetrySummary",
    "best_altitude_kind",
    "check_telemetry",
    "detect_events",
    "find_sidecar",
    "format_duration",
    "gpmf_to_telemetry",
    "haversine_m",
    "match_sidecar",
    "parse_srt",
    "read_embedded",
    "read_gpmf",
    "split_at",
    "summarize",
    "summarize_clips",
    "write_dji_fly_srt",
]
