"""`vsteer audit VIDEO.mp4 [--plot out.png] [--json]`: temporal-consistency audit of any video."""

import json
from pathlib import Path

import av
import numpy as np
import typer

from workers.audit import AuditReport, audit_frames, plot_scores
from workers.video import read_frames

EXIT_INVALID = 2  # the video cannot be read


def audit_command(video: Path, plot: Path | None = None, json_out: bool = False) -> AuditReport:
    """Read ``video``, audit it, print a summary (or the report as JSON) and write the plot when asked."""
    # 1. read the frames
    frames = load_frames(video)

    # 2. audit
    report = audit_frames(frames)

    # 3. report
    if plot is not None:
        plot_scores(report, plot)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(format_summary(report, video, plot))
    return report


def load_frames(video: Path) -> np.ndarray:
    """The video's frames, or a one-line error and exit status 2 when it is missing or unreadable."""
    if not video.is_file():
        typer.echo(f"error: no such video file: {video}", err=True)
        raise typer.Exit(EXIT_INVALID)
    try:
        return read_frames(video)
    except (av.FFmpegError, ValueError) as exc:
        typer.echo(f"error: cannot read {video} as a video: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from exc


def format_summary(report: AuditReport, video: Path, plot: Path | None = None) -> str:
    """A few aligned lines: the clip, its scores, the worst transitions and the flagged frames."""
    worst_diff = max(range(len(report.frame_diff)), key=report.frame_diff.__getitem__)
    worst_warp = max(range(len(report.warp_error)), key=report.warp_error.__getitem__)
    lines = [
        f"{video}: {report.num_frames} frames, {report.width}×{report.height}",
        f"  flicker            {report.flicker:.4f}  "
        f"(luma {report.luma_flicker:.4f}, change {report.change_flicker:.4f})",
        f"  warp error         {report.warp_error_mean:.4f}  "
        f"(max {report.warp_error[worst_warp]:.4f} at {worst_warp}→{worst_warp + 1})",
        f"  frame difference   {sum(report.frame_diff) / len(report.frame_diff):.4f}  "
        f"(max {report.frame_diff[worst_diff]:.4f} at {worst_diff}→{worst_diff + 1})",
    ]
    flagged = [f"{o.frame} ({', '.join(o.metrics)})" for o in report.outliers]
    lines.append(f"  flagged frames     {'; '.join(flagged) or 'none'}")
    if plot is not None:
        lines.append(f"  plot               {plot}")
    return "\n".join(lines)
