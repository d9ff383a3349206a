"""Probe a flight video with PyAV: what is in the file, before any expensive work.

The probe demuxes every packet of the video stream (no decoding: fast) to count frames and check whether the frame
rate is constant, then decodes the first frame to prove the stream is decodable and to read its rotation.

A file may hold several video streams (a short preview or a thumbnail beside the recording): the main one is
the longest, then the largest (`main_video_stream`); every stage that decodes the flight opens that same one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dvtr_data.errors import InputError

# A frame rate is "variable" when frame durations spread by more than this share of the nominal duration.
VFR_TOLERANCE = 0.15


@dataclass
class VideoProbe:
    """Facts about a video file. ``width``/``height`` are the display size, after rotation."""

    duration_s: float
    n_frames: int
    fps: float
    fps_num: int
    fps_den: int
    fps_variable: bool
    width: int
    height: int
    rotation: int
    codec: str
    pix_fmt: str | None
    bit_rate: int | None
    has_audio: bool
    creation_time: str | None
    platform: str | None = None
    stream_index: int = 0  # the container's index of the video stream used (`main_video_stream`)
    video_streams: int = 1  # how many video streams the file has

    @property
    def fps_fraction(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    def as_dict(self) -> dict:
        return asdict(self)


def _has_decoder(codec: str) -> bool:
    try:
        return bool(av.codec.Codec(codec, "r"))
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False


def _rotation_of(frame: av.VideoFrame) -> int:
    """Degrees clockwise to turn the stored picture for display (0, 90, 180, 270)."""
    # PyAV reports the display matrix angle counter-clockwise; a phone held upright stores -90 (i.e. 270 CCW).
    return int(round(-float(frame.rotation or 0))) % 360


def _stream_length_s(stream: av.video.stream.VideoStream) -> float:
    """A stream's length in seconds from its header (duration, else frames at its rate): no packet is read."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if stream.frames and rate:
        return float(stream.frames / rate)
    return 0.0


def main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The flight's video stream: the longest, then the largest, then the first.

    Not simply the first: a file with a short, small stream first (a preview, a cover picture) would otherwise
    be ingested as that stream while the recording is ignored (issue 11, item 15). The caller checks that the
    container has a video stream.
    """
    def key(stream: av.video.stream.VideoStream) -> tuple[float, int, int]:
        ctx = stream.codec_context
        area = (ctx.width or 0) * (ctx.height or 0) if ctx is not None else 0
        return (_stream_length_s(stream), area, -stream.index)

    return max(container.streams.video, key=key)


def probe_video(path: Path) -> VideoProbe:
    """Probe ``path``; raise `InputError` with a one-line reason when it is not a usable video."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except PermissionError as exc:
        raise InputError(f"{path}: cannot read the file (permission denied)") from exc
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable video container ({_short(exc)})") from exc
    with container:
        if not container.streams.video:
            kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
            raise InputError(f"{path}: no video stream (streams: {', '.join(kinds)})")
        stream = main_video_stream(container)
        codec_ctx = stream.codec_context
        codec = codec_ctx.name if codec_ctx is not None else "unknown"
        if codec_ctx is None or not _has_decoder(codec):
            raise InputError(f"{path}: unsupported video codec {codec!r} (no decoder for it in this build)")
        has_audio = bool(container.streams.audio)
        creation = container.metadata.get("creation_time") or stream.metadata.get("creation_time")
        platform = _platform(container.metadata, stream.metadata)

        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                if packet.pts is not None:
                    pts.append(packet.pts)
        except av.FFmpegError as exc:
            if not pts:
                raise InputError(f"{path}: cannot demux the video stream ({_short(exc)})") from exc
        if not pts:
            raise InputError(f"{path}: the video stream holds no frames")

        container.seek(0, stream=stream) if pts else None
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as exc:
            raise InputError(f"{path}: the first frame cannot be decoded ({_short(exc)}; truncated file?)") from exc
        if first is None:
            raise InputError(f"{path}: no frame could be decoded (truncated or corrupt file)")

        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        arr = np.sort(np.asarray(pts, dtype=np.int64))
        tb = stream.time_base or Fraction(1, 90000)
        if rate is None or rate <= 0:
            if len(arr) > 1:
                rate = Fraction(len(arr) - 1) / (Fraction(int(arr[-1] - arr[0])) * tb)
            else:
                rate = Fraction(30)
        rate = Fraction(rate).limit_denominator(1001)
        variable = False
        if len(arr) > 2:
            deltas = np.diff(arr).astype(np.float64) * float(tb)
            nominal = 1.0 / float(rate)
            variable = bool(np.max(np.abs(deltas - nominal)) > VFR_TOLERANCE * nominal)
        n_frames = len(arr)
        duration = n_frames / float(rate)
        rotation = _rotation_of(first)
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        return VideoProbe(
            duration_s=float(duration),
            n_frames=n_frames,
            fps=float(rate),
            fps_num=rate.numerator,
            fps_den=rate.denominator,
            fps_variable=variable,
            width=w,
            height=h,
            rotation=rotation,
            codec=codec,
            pix_fmt=codec_ctx.pix_fmt,
            bit_rate=int(stream.bit_rate or container.bit_rate or 0) or None,
            has_audio=has_audio,
            creation_time=creation,
            platform=platform,
            stream_index=stream.index,
            video_streams=len(container.streams.video),
        )


_GENERIC_ENCODERS = ("lavf", "lavc", "libx264", "libx265", "x264", "handbrake", "ffmpeg")


def _platform(*metadata: dict[str, str]) -> str | None:
    """Camera or drone named by the container: make/model tags (DJI, phones) or a vendor encoder string."""
    merged: dict[str, str] = {}
    for md in metadata:
        for k, v in md.items():
            merged.setdefault(k.lower(), v.strip())
    make = merged.get("com.apple.quicktime.make") or merged.get("make")
    model = merged.get("com.apple.quicktime.model") or merged.get("model")
    if make or model:
        return " ".join(x for x in (make, model) if x)
    encoder = merged.get("encoder", "")
    if encoder and not encoder.lower().startswith(_GENERIC_ENCODERS):
        firmware = merged.get("firmware")
        return f"{encoder} (firmware {firmware})" if firmware else encoder
    return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]
