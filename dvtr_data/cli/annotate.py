"""`dvtr-data annotate ...`: the Label Studio round trip as thin commands over `dvtr_data.annotation`.

Registered by the main CLI with ``app.add_typer(annotate_app, name="annotate")``. Every command goes through the
main CLI's error boundary. Text that comes from a server or a caption is escaped before rich renders it, and the
API token is never printed: the commands read it from the dataset's credentials file or the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from dvtr_data.cli.common import err, out

annotate_app = typer.Typer(
    name="annotate",
    help="Human captioning in Label Studio: serve, push clips, pull captions, review them, status.\n\n"
    "Typical order: serve --detach, push, (annotators work in the browser), pull, review push/pull, status.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

DatasetOpt = Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder.")]
UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="A Label Studio server (a team's hosted one); default $LABEL_STUDIO_URL, else the dataset's own server."),
]
TaskOpt = Annotated[
    str,
    typer.Option("--task", help="captions (a task per clip), moments (a task per flight segment of <= 150 s: "
                 "query, time windows, 0-4 ratings of each 2-s clip) or ratings (a task per accepted moment: "
                 "more raters rate its 2-s clips 0-4; --overlap raters per moment, default 2)."),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", help="API key for --url: a legacy token or a personal access token. Prefer $LABEL_STUDIO_API_KEY (a command line is visible to other users)."),
]


def _command(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        return annotate_app.command(name)(fn)

    return deco


def _check_task(task: str) -> None:
    from dvtr_data.errors import UsageError

    if task not in ("captions", "moments", "ratings"):
        raise UsageError(f"--task must be captions, moments or ratings, got {task!r}")


def _say(msg: str) -> None:
    err.print(escape(msg), highlight=False, soft_wrap=True)


def _connection(dataset: Path, url: str | None, api_key: str | None) -> Any:
    from dvtr_data.annotation.client import resolve_connection
    from dvtr_data.dataset import Dataset

    return resolve_connection(Dataset(dataset).require(), url, api_key)


# ----------------------------------------------------------------------------------------------------------------
@_command("serve")
def serve_cmd(
    dataset: DatasetOpt,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (the server never listens on other addresses).")] = 8080,
    detach: Annotated[bool, typer.Option("--detach", help="Keep it running in the background; stop it with `annotate stop`.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the server to become healthy (a first start takes about a minute).")] = 240.0,
) -> None:
    """Start Label Studio for a dataset: its own venv (made when missing), data inside the dataset folder.

    The first start creates an admin user and an API token, stored in <dataset>/labelstudio/credentials.json,
    readable only by you; neither is ever printed.

    Example: [bold]dvtr-data annotate serve --dataset my-dataset --detach[/]
    """
    from dvtr_data.annotation import server

    info, proc = server.start_server(dataset, port=port, say=_say, timeout_s=wait)
    state = "already running" if proc is None else f"running (started in {info.started_in_s:.0f} s)"
    out.print(f"Label Studio is {state} at {escape(info.url)}  (pid {info.pid})", highlight=False)
    out.print(
        f"Log in as {escape(info.username)}; the password is in {escape(str(info.credentials_path))} "
        "(readable only by you). push/pull/status find the server and its API token by themselves.",
        highlight=False, soft_wrap=True,
    )
    out.print(f"Server log: {escape(str(info.log_path))}", highlight=False)
    if proc is None or detach:
        out.print(f"Stop it with: dvtr-data annotate stop --dataset {escape(str(dataset))}", highlight=False)
        return
    out.print("Press Ctrl-C to stop it.", highlight=False)
    code = server.serve_foreground(proc, dataset, say=_say)
    out.print("Label Studio stopped." if code in (0, -15) else f"Label Studio exited with code {code}; see {info.log_path}",
              highlight=False, markup=False)


@_command("stop")
def stop_cmd(dataset: DatasetOpt) -> None:
    """Stop the Label Studio server `annotate serve` started for a dataset.

    Example: [bold]dvtr-data annotate stop --dataset my-dataset[/]
    """
    from dvtr_data.annotation import server

    info = server.stop_server(dataset)
    if info is None:
        out.print(f"no Label Studio server was running for {escape(str(dataset))}", highlight=False)
    else:
        out.print(f"stopped Label Studio at {escape(info.url)} (pid {info.pid})", highlight=False)


@_command("push")
def push_cmd(
    dataset: DatasetOpt,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    captions_per_task: Annotated[int | None, typer.Option("--captions-per-task", "-k", help="Caption areas per task (default: as last push, else 1).")] = None,
    overlap: Annotated[int | None, typer.Option(help="Annotators per clip (Label Studio's maximum annotations; default: as last push, else 1).")] = None,
    clip: Annotated[list[str] | None, typer.Option("--clip", help="Push only these clip ids (repeatable).")] = None,
    include_rejected: Annotated[bool, typer.Option("--include-rejected", help="Also push clips that failed QC.")] = False,
    limit: Annotated[int | None, typer.Option(help="Push at most this many clips (in flight order).")] = None,
    media_url: Annotated[str | None, typer.Option(help="Remote servers: prefix the server reaches the dataset's clips/ under (https://, s3://, or /data/local-files/?d=...).")] = None,
    storage_path: Annotated[Path | None, typer.Option(help="Remote servers: a folder on the server to add as Local Files storage.")] = None,
    task: TaskOpt = "captions",
) -> None:
    """Create the dataset's project (once) and import a task per clip, its pre-caption drafts listed beside an empty box.

    With --task moments: the moments project, a task per flight segment (whole flights up to 150 s).

    With --task ratings: the rating round, a task per accepted moment, --overlap raters each (default 2).

    Drafts are never pre-filled: a click on "draft N" puts draft N's text in the box to edit.

    Drafts of a model with random weights are marked as noise and offered to no box.

    Re-running imports only new clips, never duplicates a task, and rewrites the drafts of tasks whose drafts changed.

    Example: [bold]dvtr-data annotate push --dataset my-dataset --captions-per-task 1 --overlap 5[/]
    """
    from dvtr_data.annotation.push import push, raise_for_report

    _check_task(task)
    conn = _connection(dataset, url, api_key)
    if task == "moments":
        from dvtr_data.annotation.moments import push_moments

        mreport = push_moments(dataset, conn, overlap=overlap or 1, media_url=media_url, say=_say)
        out.print(
            f"moments project {mreport.project_id} ({'created' if mreport.project_created else 'found'}) at "
            f"{escape(mreport.url)}: {mreport.segments} segment(s), {mreport.tasks_created} new task(s), "
            f"{mreport.tasks_existing} already there; {mreport.media_placed} flight video(s) placed in annotation_media/",
            highlight=False, soft_wrap=True,
        )
        for path in mreport.missing_videos[:3]:
            err.print(f"warning: flight video {escape(path)} is missing: its tasks cannot play", highlight=False)
        return
    if task == "ratings":
        from dvtr_data.annotation.ratings import DEFAULT_OVERLAP, push_ratings

        rreport = push_ratings(dataset, conn, overlap=overlap or DEFAULT_OVERLAP, media_url=media_url, say=_say)
        out.print(
            f"ratings project {rreport.project_id} ({'created' if rreport.project_created else 'found'}) at "
            f"{escape(rreport.url)}: {rreport.moments} accepted moment(s), {rreport.tasks_created} new task(s), "
            f"{rreport.tasks_existing} already there; {rreport.media_placed} flight video(s) placed in annotation_media/",
            highlight=False, soft_wrap=True,
        )
        for path in rreport.missing_videos[:3]:
            err.print(f"warning: flight video {escape(path)} is missing: its tasks cannot play", highlight=False)
        return
    report = push(dataset, conn, captions_per_task=captions_per_task, overlap=overlap, clip_ids=clip or None,
                  include_rejected=include_rejected, limit=limit, media_url=media_url, storage_path=storage_path, say=_say)
    drafts = f"drafts from {escape(report.model_version)}" if report.model_version else "no drafts (precaption has not run)"
    out.print(
        f"project {report.project_id} ({'created' if report.project_created else 'found'}) at {escape(report.url)}: "
        f"{report.tasks_created} new task(s), {report.tasks_existing} already there; {drafts}, listed beside an "
        "empty caption box (never pre-filled)"
        + (f"; {report.predictions_removed} pre-filling prediction(s) of earlier pushes removed"
           if report.predictions_removed else "")
        + (f"; drafts block refreshed in {report.tasks_refreshed} task(s)" if report.tasks_refreshed else ""),
        highlight=False, soft_wrap=True,
    )
    if report.random_drafts:
        err.print(
            f"warning: the drafts come from {escape(report.model_version or '?')}, a model with random weights: they are "
            "noise, not descriptions. They are listed on the page under that note and never fill a caption box; for "
            "useful drafts run `dvtr-data precaption` with trained weights, then push again.",
            highlight=False, soft_wrap=True,
        )
    for cid, ids in list(report.duplicate_tasks.items())[:3]:
        err.print(f"warning: clip {escape(cid)} has {len(ids)} tasks ({', '.join(map(str, ids))}); delete the extra ones in Label Studio",
                  highlight=False, soft_wrap=True)
    out.print(f"Annotators open: {escape(report.url)}/projects/{report.project_id}/data?labeling=1 "
              "(the labeling stream: the guidelines open first)", highlight=False)
    raise_for_report(report, dataset)


@_command("pull")
def pull_cmd(
    dataset: DatasetOpt,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    min_words: Annotated[int, typer.Option(help="Captions with fewer words are flagged too_short.")] = 5,
    task: TaskOpt = "captions",
) -> None:
    """Export the project and merge every caption into captions.parquet, with validation flags.

    Re-pulling updates rows in place (an edited annotation updates its rows); nothing is duplicated or lost.

    Example: [bold]dvtr-data annotate pull --dataset my-dataset[/]
    """
    from dvtr_data.annotation.pull import DELETED_FLAG, pull

    _check_task(task)
    conn = _connection(dataset, url, api_key)
    if task == "moments":
        from dvtr_data.annotation.moments import pull_moments

        mreport = pull_moments(dataset, conn, say=_say)
        mflags = ", ".join(f"{escape(k)} {v}" for k, v in sorted(mreport.flags.items())) or "none"
        out.print(
            f"pulled moments project {mreport.project_id}: {mreport.annotations} annotation(s) -> {mreport.rows_new} "
            f"new, {mreport.rows_updated} updated moment row(s), {mreport.accepted} accepted; "
            f"{mreport.kept_deleted} kept as deleted in Label Studio; flags: {mflags}",
            highlight=False, soft_wrap=True,
        )
        return
    if task == "ratings":
        from dvtr_data.annotation.ratings import pull_ratings

        rreport = pull_ratings(dataset, conn, say=_say)
        rflags = ", ".join(f"{escape(k)} {v}" for k, v in sorted(rreport.flags.items())) or "none"
        out.print(
            f"pulled ratings project {rreport.project_id}: {rreport.annotations} annotation(s) -> {rreport.rows_new} "
            f"new, {rreport.rows_updated} updated rating row(s), {rreport.accepted} accepted; {rreport.superseded} "
            f"superseded by the same rater's later one; {rreport.kept_deleted} kept as deleted; flags: {rflags}",
            highlight=False, soft_wrap=True,
        )
        return
    report = pull(dataset, conn, min_words=min_words, say=_say)
    flags = ", ".join(f"{escape(k)} {v}" for k, v in sorted(report.flags.items())) or "none"
    out.print(
        f"pulled project {report.project_id}: {report.annotations} annotation(s) on {report.tasks} task(s) -> "
        f"{report.rows_new} new, {report.rows_updated} updated, {report.rows_unchanged} unchanged caption row(s); "
        f"{report.skipped} skipped, {report.cancelled} cancelled; flags: {flags}",
        highlight=False, soft_wrap=True,
    )
    if report.kept_deleted_rows:
        # Deleted means out of splits and exports: say how many rows that took out, and how many were new this pull.
        where = ""
        if report.deleted_tasks:
            tid, cid = next(iter(report.deleted_tasks.items()))
            where = (f" ({len(report.deleted_tasks)} task(s) deleted, e.g. task {tid}, clip {escape(cid)}; "
                     "`dvtr-data annotate push` recreates the tasks)")
        err.print(
            f"warning: {report.kept_deleted_rows} caption row(s) were deleted in Label Studio "
            f"({report.newly_deleted_rows} found by this pull, {report.unaccepted_deleted_rows} of them accepted until now)"
            f"{where}; they are kept, flagged {DELETED_FLAG}, and no longer accepted: out of splits and exports.",
            highlight=False, soft_wrap=True,
        )
    if report.foreign_tasks:
        err.print(f"note: {report.foreign_tasks} task(s) without a clip id (not made by push) were ignored", highlight=False)
    if report.unknown_clips:
        err.print(f"warning: {len(report.unknown_clips)} task(s) name clips not in this dataset (e.g. {escape(report.unknown_clips[0])}); ignored",
                  highlight=False, soft_wrap=True)


@_command("simulate")
def simulate_cmd(
    dataset: DatasetOpt,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    annotators: Annotated[int | None, typer.Option(help="Simulated annotators (default: the project's overlap).")] = None,
    clip: Annotated[list[str] | None, typer.Option("--clip", help="Only these clip ids (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated lead times.")] = 0,
    task: TaskOpt = "captions",
) -> None:
    """Generated flights only: submit their ground-truth captions as simulated annotators (origin "simulated").

    Stands in for people in `make demo` and the tests; re-running submits only what is missing.

    Example: [bold]dvtr-data annotate simulate --dataset demo-data/dataset[/]
    """
    from dvtr_data.annotation.simulate import simulate

    _check_task(task)
    conn = _connection(dataset, url, api_key)
    if task == "moments":
        from dvtr_data.annotation.moments import simulate_moments

        mreport = simulate_moments(dataset, conn, seed=seed, say=_say)
        out.print(
            f"SIMULATED moments on project {mreport.project_id}: {mreport.annotations_created} annotation(s) "
            f"submitted from the generated flights' truth, {mreport.annotations_existing} already there, "
            f"{mreport.tasks_with_truth} segment task(s) of generated flights",
            highlight=False, soft_wrap=True,
        )
        return
    if task == "ratings":
        from dvtr_data.annotation.ratings import simulate_ratings

        rreport = simulate_ratings(dataset, conn, overlap=annotators, seed=seed, say=_say)
        out.print(
            f"SIMULATED ratings on project {rreport.project_id}: {rreport.annotations_created} annotation(s) "
            f"submitted from the generated flights' truth (per-rater noise, seed {seed}), "
            f"{rreport.annotations_existing} already there, {rreport.tasks_with_truth} moment task(s) with truth",
            highlight=False, soft_wrap=True,
        )
        return
    report = simulate(dataset, conn, annotators=annotators, clip_ids=clip or None, seed=seed, say=_say)
    out.print(
        f"SIMULATED annotators ({report.annotators}) on project {report.project_id}: {report.annotations_created} "
        f"annotation(s) submitted ({report.captions_submitted} caption(s)), {report.annotations_existing} already there, "
        f"{report.clips_with_truth} task(s) of generated clips",
        highlight=False, soft_wrap=True,
    )


@_command("status")
def status_cmd(
    dataset: DatasetOpt,
    target: Annotated[int | None, typer.Option(help="Captions wanted per clip (default: captions per task x overlap of the last push).")] = None,
) -> None:
    """Progress, annotators and caption quality (leave-one-out BLEU-4 / CIDEr-D, distinct-n, self-BLEU).

    Computed from captions.parquet as the last pull left it: no server needed.

    Example: [bold]dvtr-data annotate status --dataset my-dataset[/]
    """
    from dvtr_data.annotation.status import annotation_status

    rep = annotation_status(dataset, target=target)
    print_status(rep)


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def print_status(rep: Any) -> None:
    out.print(f"[bold]progress[/]: {rep.complete_clips} of {rep.clips} clip(s) have {rep.target} accepted caption(s)", highlight=False)
    progress = Table()
    progress.add_column("accepted captions per clip")
    for n in rep.progress:
        progress.add_column(f"{n}{'+' if n == rep.target else ''}", justify="right")
    progress.add_row("clips", *(str(v) for v in rep.progress.values()))
    out.print(progress)

    origins = ", ".join(f"{escape(k)} {v}" for k, v in sorted(rep.by_origin.items())) or "-"
    summary = Table(show_header=False)
    summary.add_row("rows", f"{rep.captions} ({rep.accepted} accepted)")
    summary.add_row("origin", origins + ("   [bold yellow](simulated = not human: demo/test only)[/]" if "simulated" in rep.by_origin else ""))
    summary.add_row("status", ", ".join(f"{escape(k)} {v}" for k, v in sorted(rep.by_status.items())) or "-")
    summary.add_row("flags", ", ".join(f"{escape(k)} {v}" for k, v in sorted(rep.flags.items())) or "none")
    summary.add_row("QC choices", ", ".join(f"{escape(k)} {v}" for k, v in sorted(rep.qc_choices.items())) or "-")
    out.print(summary)

    # 80 columns: a light box, numbers that never wrap, and the name folded (whole) in the room that is left
    people = Table(
        title="annotators (speed from Label Studio's lead time per annotation)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        caption="med s: median seconds per annotation; kept: drafts submitted unchanged",
        caption_justify="left",
    )
    people.add_column("annotator", overflow="fold", min_width=12)
    for col in ("annot.", "capt.", "acc.", "skip", "med s", "/hour", "kept", "words"):
        people.add_column(col, justify="right", no_wrap=True)
    for a in rep.annotators:
        who = escape(a.annotator) + (" [bold yellow](SIMULATED)[/]" if a.origin == "simulated" else "")
        people.add_row(
            who, str(a.annotations), str(a.captions), str(a.accepted), str(a.skipped), _fmt(a.median_lead_s, "{:.1f}"),
            _fmt(a.annotations_per_hour, "{:.0f}"), _fmt(a.unchanged_draft_share, "{:.0%}"), _fmt(a.mean_words, "{:.1f}"),
        )
    out.print(people)
    reviewed = [a for a in rep.annotators if getattr(a, "reviewed", 0)]
    if reviewed:  # after `annotate review pull`: how much of each annotator's reviewed work reviewers accepted
        rates = Table(title="review acceptance (latest review per caption)", title_justify="left", box=box.SIMPLE_HEAD,
                      show_edge=False, pad_edge=False)
        rates.add_column("annotator", overflow="fold", min_width=12)
        for col in ("reviewed", "accepted", "rate"):
            rates.add_column(col, justify="right", no_wrap=True)
        for a in reviewed:
            rates.add_row(escape(a.annotator), str(a.reviewed), str(a.review_accepted), _fmt(a.acceptance_rate, "{:.0%}"))
        out.print(rates)

    q = rep.quality
    out.print(f"[bold]caption quality[/]: {q.captions} accepted caption(s), {q.clips_scored} clip(s) with two or more", highlight=False)
    quality = Table(show_header=False)
    quality.add_row("BLEU-4, leave-one-out within a clip", _fmt(q.bleu4_loo))
    quality.add_row("CIDEr-D, leave-one-out within a clip", _fmt(q.cider_d_loo))
    quality.add_row("distinct-1 / distinct-2", f"{_fmt(q.distinct_1)} / {_fmt(q.distinct_2)}")
    quality.add_row("self-BLEU-4 (lower = more diverse)", _fmt(q.self_bleu4))
    quality.add_row("mean length (words)", _fmt(q.mean_words, "{:.1f}"))
    quality.add_row("vocabulary size", str(q.vocabulary))
    quality.add_row("drafts submitted unchanged", _fmt(q.unchanged_draft_share, "{:.1%}"))
    out.print(quality)
    if getattr(rep, "moments", None) is not None:
        print_moments_status(rep.moments)
    if rep.captions == 0 and getattr(rep, "moments", None) is None:
        err.print("no captions pulled yet: run `dvtr-data annotate pull` after annotators have submitted", highlight=False)


def print_moments_status(m: Any) -> None:
    """Moments in 80 columns: one line of totals, raters per query, and a narrow per-annotator table."""
    out.print(f"[bold]moments[/]: {m.queries} accepted query(ies) of {m.rows}, {m.windows} window(s)", highlight=False)
    out.print(f"raters: {m.complete} of {m.queries} query(ies) have 3; rating round: {m.ratings_accepted} of "
              f"{m.rating_rows} rating(s) accepted", highlight=False)
    raters = Table()
    raters.add_column("distinct raters per query")
    for n in m.raters:
        raters.add_column(f"{n}{'+' if n == max(m.raters) else ''}", justify="right")
    raters.add_row("queries", *(str(v) for v in m.raters.values()))
    out.print(raters)
    if m.flags:
        out.print("moment flags: " + ", ".join(f"{escape(k)} {v}" for k, v in sorted(m.flags.items())), highlight=False)
    people = Table(title="moment annotators", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                   pad_edge=False, caption="ratings: accepted ratings of other people's queries",
                   caption_justify="left")
    people.add_column("annotator", overflow="fold", min_width=12)
    for col in ("queries", "windows", "ratings", "med s"):
        people.add_column(col, justify="right", no_wrap=True)
    for a in m.annotators:
        who = escape(a.annotator) + (" [bold yellow](SIMULATED)[/]" if a.origin == "simulated" else "")
        people.add_row(who, str(a.queries), str(a.windows), str(a.ratings), _fmt(a.median_lead_s, "{:.1f}"))
    out.print(people)


__all__ = ["annotate_app", "print_moments_status", "print_status"]



# ----------------------------------------------------------------------------------------------------------------
# review: a review project on the same server (Label Studio's open-source edition has no review stream)
# ----------------------------------------------------------------------------------------------------------------
review_app = typer.Typer(
    name="review",
    help="Review submitted captions: accept, reject with a reason, or fix (a review project beside the captions one).\n\n"
    "Typical order: annotate pull, review push, (reviewers work in the browser), review pull, status.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
annotate_app.add_typer(review_app, name="review")


@review_app.command("push")
def review_push_cmd(
    dataset: DatasetOpt,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    overlap: Annotated[int, typer.Option(help="Reviewers per caption (Label Studio's maximum annotations).")] = 1,
    limit: Annotated[int | None, typer.Option(help="Add at most this many review tasks.")] = None,
    media_url: Annotated[str | None, typer.Option(help="Remote servers: as for `annotate push`.")] = None,
    storage_path: Annotated[Path | None, typer.Option(help="Remote servers: as for `annotate push`.")] = None,
) -> None:
    """Create the review project (once) and add a task per submitted caption without one: clip, caption, author.

    A reviewer never reviews their own caption: `review pull` refuses such a review and names it.

    Example: [bold]dvtr-data annotate review push --dataset my-dataset[/]
    """
    from dvtr_data.annotation.review import review_push

    conn = _connection(dataset, url, api_key)
    report = review_push(dataset, conn, overlap=overlap, limit=limit, media_url=media_url, storage_path=storage_path, say=_say)
    out.print(
        f"review project {report.project_id} ({'created' if report.project_created else 'found'}) at {escape(report.url)}: "
        f"{report.tasks_created} new review task(s), {report.tasks_existing} already there, "
        f"{report.candidates} submitted caption(s) in all",
        highlight=False, soft_wrap=True,
    )
    out.print(f"Reviewers open: {escape(report.url)}/projects/{report.project_id}/data?labeling=1", highlight=False)


@review_app.command("pull")
def review_pull_cmd(
    dataset: DatasetOpt,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    min_words: Annotated[int, typer.Option(help="Fixed captions with fewer words are flagged too_short.")] = 5,
) -> None:
    """Export the review project into reviews.parquet; each fix becomes a new caption row linked to the one it fixes.

    Where a caption has a review, the latest review decides whether it is accepted (split, export, status).

    Example: [bold]dvtr-data annotate review pull --dataset my-dataset[/]
    """
    from dvtr_data.annotation.review import review_pull

    conn = _connection(dataset, url, api_key)
    report = review_pull(dataset, conn, min_words=min_words, say=_say)
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(report.by_status.items())) or "none"
    out.print(
        f"pulled review project {report.project_id}: {report.reviews} review(s) on {report.tasks} task(s) ({statuses}); "
        f"{report.fixes} fix(es) as new caption row(s), {report.fixes_accepted} accepted; {report.skipped} skipped",
        highlight=False, soft_wrap=True, markup=False,
    )
    for cid, who in report.self_reviews[:5]:
        err.print(f"refused: {who} reviewed their own caption {cid}; not recorded (another reviewer must review it)",
                  highlight=False, soft_wrap=True, markup=False)
    if len(report.self_reviews) > 5:
        err.print(f"refused: {len(report.self_reviews) - 5} more self-review(s)", highlight=False)
    for cid, missing in report.incomplete[:5]:
        err.print(f"left out: a review of caption {cid} has {missing}; complete it and pull again",
                  highlight=False, soft_wrap=True, markup=False)
    if len(report.incomplete) > 5:
        err.print(f"left out: {len(report.incomplete) - 5} more incomplete review(s)", highlight=False)
    if report.unknown_captions:
        err.print(f"warning: {len(report.unknown_captions)} review task(s) name captions not in this dataset "
                  f"(e.g. {report.unknown_captions[0]}); ignored", highlight=False, soft_wrap=True, markup=False)
