"""The annotation round trip `make demo` runs: serve -> push -> simulate -> pull -> status, with no person.

Kept here (not in `dvtr_data.demo`) so the demo gains the whole sequence with one call, and the real-server tests
can run exactly what the demo runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dvtr_data.annotation import server
from dvtr_data.annotation.client import Connection, resolve_connection
from dvtr_data.annotation.pull import PullReport, pull
from dvtr_data.annotation.push import PushReport, push
from dvtr_data.annotation.simulate import SimulateReport, simulate
from dvtr_data.annotation.status import StatusReport, annotation_status
from dvtr_data.dataset import Dataset


@dataclass
class RoundTrip:
    server: server.ServerInfo
    push: PushReport
    simulate: SimulateReport
    pull: PullReport
    status: StatusReport
    stopped: bool


def run_round_trip(
    dataset_dir: Path, *, port: int | None = None, captions_per_task: int = 1, overlap: int = 5,
    keep_server: bool = False, say: Callable[[str], None] = print,
) -> RoundTrip:
    """Start (or reuse) the dataset's server, push its clips, submit simulated captions, pull and summarise.

    The server is stopped at the end unless ``keep_server`` (or it was already running before this call). Without
    ``port``, the first free port from 8080 is used.
    """
    if port is None:
        port = next((p for p in range(server.DEFAULT_PORT, server.DEFAULT_PORT + 50) if not server.port_in_use(p)), server.DEFAULT_PORT)
    info, proc = server.start_server(dataset_dir, port=port, say=say)
    say(f"Label Studio {'already running' if proc is None else 'started'} at {info.url}")
    stopped = False
    try:
        conn: Connection = resolve_connection(Dataset(dataset_dir))
        pushed = push(dataset_dir, conn, captions_per_task=captions_per_task, overlap=overlap, say=say)
        say(f"push: project {pushed.project_id}, {pushed.tasks_created} new task(s), {pushed.tasks_existing} already there")
        simulated = simulate(dataset_dir, conn, say=say)
        say(f"simulate: {simulated.annotations_created} simulated annotation(s) submitted (origin 'simulated')")
        pulled = pull(dataset_dir, conn, say=say)
        say(f"pull: {pulled.rows_new} new, {pulled.rows_updated} updated, {pulled.rows_unchanged} unchanged caption row(s)")
        status = annotation_status(dataset_dir)
    finally:
        if proc is not None and not keep_server:
            server.stop_server(dataset_dir)
            stopped = True
    return RoundTrip(info, pushed, simulated, pulled, status, stopped)
