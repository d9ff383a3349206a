"""The drone's camera: a pinhole with a gimbal, and the paths a pilot flies, sampled once per frame.

A path is a list of maneuvers (straight pass, orbit, climb, descent, yaw turn, hover). Each sets target
velocities; the targets are eased into one another (a pilot does not jerk the sticks and the aircraft has
inertia), then integrated frame by frame. Smooth motion matters: a shot detector must see no cut inside a
shot. Wind adds a little low-frequency wobble and the auto exposure a slow drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HFOV_DEG = 76.0  # a DJI-like 24 mm-equivalent wide lens on 16:9 video
KINDS = ("straight", "orbit", "climb", "descent", "yaw", "hover")
VIEWS = ("nadir", "oblique")
MIN_ALT_M = 18.0
MAX_ALT_M = 160.0
MAX_PITCH_DEG = -35.0  # never tilt up further: the horizon must stay out of the frame


@dataclass(frozen=True)
class Maneuver:
    """One stretch of a flight. ``speed_mps``/``rate``/``direction`` default to what a pilot typically does.

    rate: climb or descent speed (m/s) for climb/descent, turn rate (deg/s) for yaw, radius (m) for orbit.
    direction: +1 or -1 (orbit sense, turn sense, or flying backwards for straight).
    """

    kind: str
    duration_s: float
    view: str = "nadir"
    speed_mps: float | None = None
    rate: float | None = None
    direction: int = 1
    pitch_deg: float | None = None  # gimbal pitch for oblique views (default -45)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown maneuver {self.kind!r}; expected one of {KINDS}")
        if self.view not in VIEWS:
            raise ValueError(f"unknown view {self.view!r}; expected one of {VIEWS}")
        if self.duration_s <= 0:
            raise ValueError("a maneuver needs a positive duration")

    @property
    def gimbal_pitch(self) -> float:
        if self.view == "nadir":
            return -90.0
        return min(MAX_PITCH_DEG, self.pitch_deg if self.pitch_deg is not None else -45.0)


@dataclass
class Trajectory:
    """Per-frame camera state. x/y are unwrapped map metres (east, south); angles in degrees."""

    x: np.ndarray
    y: np.ndarray
    alt: np.ndarray
    yaw: np.ndarray  # compass heading of the aircraft and camera, 0 = north, clockwise
    pitch: np.ndarray  # gimbal pitch, -90 = straight down
    roll: np.ndarray
    gain: np.ndarray  # exposure multiplier
    speed: np.ndarray  # horizontal ground speed, m/s
    vz: np.ndarray  # vertical speed, m/s

    def __len__(self) -> int:
        return len(self.x)

    def pose(self, i: int) -> Pose:
        return Pose(float(self.x[i]), float(self.y[i]), float(self.alt[i]), float(self.yaw[i]),
                    float(self.pitch[i]), float(self.roll[i]), float(self.gain[i]))


@dataclass(frozen=True)
class Pose:
    x: float
    y: float
    alt: float
    yaw: float
    pitch: float
    roll: float = 0.0
    gain: float = 1.0


def intrinsics(width: int, height: int, hfov_deg: float = HFOV_DEG) -> np.ndarray:
    f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[f, 0, width / 2 - 0.5], [0, f, height / 2 - 0.5], [0, 0, 1]], np.float64)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World (east, north, up) -> camera (right, down, forward)."""
    ps, p = math.radians(yaw), math.radians(pitch)
    d = np.array([math.sin(ps), math.cos(ps), 0.0])  # heading on the ground
    r = np.array([math.cos(ps), -math.sin(ps), 0.0])
    f = math.cos(p) * d + math.sin(p) * np.array([0.0, 0.0, 1.0])
    dn = np.cross(f, r)
    ro = math.radians(roll)
    r2 = math.cos(ro) * r + math.sin(ro) * dn
    dn2 = -math.sin(ro) * r + math.cos(ro) * dn
    return np.stack([r2, dn2, f])


def ground_homography(pose: Pose, k: np.ndarray, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """3x3 map from ground map metres (x east, y south, relative to ``origin``) to image pixels."""
    rot = rotation(pose.yaw, pose.pitch, pose.roll)
    xc, yc = pose.x - origin[0], pose.y - origin[1]
    # ground point (x, y, 0) in map coordinates -> world offset from the camera (x - xc, -(y - yc), -alt)
    a = np.array([[1.0, 0.0, -xc], [0.0, -1.0, yc], [0.0, 0.0, -pose.alt]])
    return k @ rot @ a


def look_at_ground(pose: Pose) -> np.ndarray:
    """Where the optical axis meets the ground (map metres)."""
    tilt = math.radians(-pose.pitch)
    ahead = pose.alt / math.tan(tilt) if tilt < math.radians(89.9) else 0.0
    ps = math.radians(pose.yaw)
    return np.array([pose.x + ahead * math.sin(ps), pose.y - ahead * math.cos(ps)])


# ------------------------------------------------------------------------------------------------ paths
def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _controls(m: Maneuver, alt: float) -> tuple[float, float, float, float]:
    """(forward m/s, right m/s, up m/s, yaw deg/s) a pilot holds during the maneuver."""
    if m.kind == "straight":
        return _or(m.speed_mps, 8.0) * m.direction, 0.0, 0.0, 0.0
    if m.kind == "orbit":
        v = _or(m.speed_mps, 6.0)
        if m.rate is not None:
            radius = m.rate
        elif m.view == "oblique":  # circle the point the camera looks at
            radius = alt / math.tan(math.radians(-m.gimbal_pitch))
        else:
            radius = 35.0
        radius = max(radius, 8.0)
        return 0.0, v * m.direction, 0.0, -math.degrees(v / radius) * m.direction
    if m.kind in ("climb", "descent"):
        rate = _or(m.rate, 2.5 if m.kind == "climb" else 2.0)
        drift = _or(m.speed_mps, 1.0)
        up = rate if m.kind == "climb" else -rate
        return drift, 0.0, up, 0.0
    if m.kind == "yaw":
        return _or(m.speed_mps, 0.0), 0.0, 0.0, _or(m.rate, 20.0) * m.direction
    return 0.0, 0.0, 0.0, 0.0  # hover


def _smooth(a: np.ndarray, width: int) -> np.ndarray:
    """Ease step changes into S-curves (Hann kernel), holding the ends."""
    width = max(1, width | 1)
    if width == 1 or len(a) < 2:
        return a.copy()
    w = np.hanning(width + 2)[1:-1]
    w /= w.sum()
    pad = width // 2
    return np.convolve(np.pad(a, pad, mode="edge"), w, mode="valid")


def _wobble(rng: np.random.Generator, t: np.ndarray, amp: float, f_lo: float, f_hi: float) -> np.ndarray:
    out = np.zeros_like(t)
    for _ in range(3):
        a, f, phase = rng.uniform(0.3, 1.0), rng.uniform(f_lo, f_hi), rng.uniform(0, 2 * np.pi)
        out += a * np.sin(2 * np.pi * f * t + phase)
    return out * amp / 1.6


def fly(
    maneuvers: list[Maneuver], fps: float, *, start: tuple[float, float], yaw: float, alt: float,
    rng: np.random.Generator, pre: int = 0, post: int = 0,
) -> tuple[Trajectory, np.ndarray]:
    """Integrate the maneuvers at ``fps``.

    Returns the trajectory (``pre`` extra frames before and ``post`` after the planned ones, for cross-fades)
    and, per planned frame, the index of its maneuver.
    """
    counts = [max(1, round(m.duration_s * fps)) for m in maneuvers]
    n = sum(counts)
    total = pre + n + post
    ctl = np.zeros((total, 5))
    which = np.zeros(n, np.int64)
    a = alt
    i = pre
    for k, (m, c) in enumerate(zip(maneuvers, counts, strict=False)):
        m_fwd, m_right, m_up, m_yaw_rate = _controls(m, a)
        if m_up < 0:  # never descend into the ground
            m_up = -min(-m_up, max(0.0, (a - MIN_ALT_M) / (c / fps)))
        if m_up > 0:
            m_up = min(m_up, max(0.0, (MAX_ALT_M - a) / (c / fps)))
        a += m_up * c / fps
        ctl[i:i + c] = (m_fwd, m_right, m_up, m_yaw_rate, m.gimbal_pitch)
        which[i - pre:i - pre + c] = k
        i += c
    ctl[:pre] = ctl[pre]
    ctl[pre + n:] = ctl[pre + n - 1]
    ease = round(1.1 * fps)
    for j in range(4):
        ctl[:, j] = _smooth(ctl[:, j], ease)
    # The gimbal starts tilting when the maneuver that wants the new view begins (not before: the segment
    # before it keeps its view), and is there a second later.
    tilt = round(1.0 * fps) | 1
    ctl[:, 4] = _smooth(np.concatenate([np.full(tilt // 2, ctl[0, 4]), ctl[:, 4]]), tilt)[: len(ctl)]

    dt = 1.0 / fps
    fwd, right, up, yaw_rate, pitch = ctl.T
    # integrate so that the first planned frame sits at the chosen start
    yaw_c = np.cumsum(np.concatenate([[0.0], yaw_rate[:-1] * dt]))
    yaw_c += yaw - yaw_c[pre]
    ps = np.radians(yaw_c)
    vx = fwd * np.sin(ps) + right * np.cos(ps)  # map: x east
    vy = -fwd * np.cos(ps) + right * np.sin(ps)  # map: y south
    x = np.cumsum(np.concatenate([[0.0], vx[:-1] * dt]))
    y = np.cumsum(np.concatenate([[0.0], vy[:-1] * dt]))
    z = np.cumsum(np.concatenate([[0.0], up[:-1] * dt]))
    x += start[0] - x[pre]
    y += start[1] - y[pre]
    z += alt - z[pre]

    t = np.arange(total) * dt
    # wind: a few tenths of a metre and of a degree, a second or so in period
    traj = Trajectory(
        x=x + _wobble(rng, t, 0.25, 0.1, 0.7),
        y=y + _wobble(rng, t, 0.25, 0.1, 0.7),
        alt=np.clip(z + _wobble(rng, t, 0.12, 0.1, 0.5), MIN_ALT_M * 0.8, MAX_ALT_M * 1.1),
        yaw=np.mod(yaw_c + _wobble(rng, t, 0.3, 0.1, 0.8), 360.0),
        pitch=np.minimum(pitch + _wobble(rng, t, 0.25, 0.15, 0.9), MAX_PITCH_DEG + 1.0),
        roll=_wobble(rng, t, 0.35, 0.15, 1.0),
        gain=1.0 + _wobble(rng, t, 0.035, 0.02, 0.08),
        speed=np.hypot(vx, vy),
        vz=up,
    )
    return traj, which
